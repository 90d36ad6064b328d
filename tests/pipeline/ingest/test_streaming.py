"""The movie's threads: a prefetch that decodes ahead (same blocks, errors reach the
consumer, closing stops the source), and a feed that compresses on a thread of its own
(the store reads back frame for frame, a writer error reaches the caller, no thread is
left behind)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cellsift.catalog.checksums import STORE_PENDING
from cellsift.pipeline.ingest.streaming import ChunkFiles, MovieFeed, Prefetch
from cellsift.schemas import InputFormatError

H, W = 6, 7


def _frames(n: int) -> np.ndarray:
    return (np.arange(n * H * W) % 251).reshape(n, H, W).astype(np.uint8)


def _blocks(frames: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(frames), size):
        yield frames[start : start + size].copy()


def _movie(tmp_path: Path, n: int, chunk: int):  # type: ignore[no-untyped-def]
    import zarr
    from zarr.codecs import ZstdCodec

    group = zarr.open_group(tmp_path / "s.zarr", mode="w", zarr_format=3)
    return group.create_array(
        "movie", shape=(n, H, W), chunks=(chunk, H, W), dtype="uint8", compressors=[ZstdCodec(level=1)]
    )


def test_prefetch_yields_the_same_blocks_in_order() -> None:
    frames = _frames(23)
    got = list(Prefetch(_blocks(frames, 5), max_blocks=2))
    assert [len(b) for b in got] == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(np.concatenate(got), frames)


def test_prefetch_error_reaches_the_consumer() -> None:
    def failing() -> Iterator[np.ndarray]:
        yield _frames(4)
        raise InputFormatError("chunk 3 is truncated", fix="re-copy it")

    prefetch = Prefetch(failing(), max_blocks=1)
    assert len(next(prefetch)) == 4
    with pytest.raises(InputFormatError, match="truncated"):
        next(prefetch)
    assert list(prefetch) == []  # finished after the error


def test_closing_a_prefetch_stops_and_closes_its_source() -> None:
    produced: list[int] = []
    closed = threading.Event()

    def endless() -> Iterator[np.ndarray]:
        try:
            while True:
                produced.append(1)
                yield _frames(2)
        finally:
            closed.set()

    prefetch = Prefetch(endless(), max_blocks=2)
    assert len(next(prefetch)) == 2
    prefetch.close()
    assert closed.is_set()  # the source's generator was closed on the prefetch thread
    count = len(produced)
    assert count < 10 and len(produced) == count  # stopped: nothing more is decoded
    assert "ingest-prefetch" not in {t.name for t in threading.enumerate()}


def test_feed_compresses_on_its_own_thread_and_reads_back(tmp_path: Path) -> None:
    import zarr

    frames = _frames(25)
    movie = _movie(tmp_path, 25, 10)
    feed = MovieFeed(
        _blocks(frames, 7),
        n_frames=25,
        chunk=10,
        dtype=np.dtype(np.uint8),
        peak_frames=None,
        video=tmp_path / "v.avi",
    )
    feed.start_writing(movie, tmp_path / "s.zarr")
    max_proj = feed.write_into(movie, tmp_path / "s.zarr")  # waits for the compressing thread
    feed.stop()
    np.testing.assert_array_equal(max_proj, frames.max(axis=0))
    np.testing.assert_array_equal(zarr.open_group(tmp_path / "s.zarr", mode="r")["movie"][...], frames)
    assert feed.written == 25
    pending = json.loads((tmp_path / "s.zarr" / STORE_PENDING).read_text())["files"]
    assert sorted(pending) == [
        "movie/c/0/0/0",
        "movie/c/1/0/0",
    ]  # the direct writes; the last went through zarr
    assert not {"ingest-decode", "ingest-compress"} & {t.name for t in threading.enumerate()}


def test_a_writer_error_reaches_the_caller_and_stops_the_decoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(self: ChunkFiles, index: int, piece: np.ndarray) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ChunkFiles, "write", full_disk)
    movie = _movie(tmp_path, 400, 5)
    feed = MovieFeed(
        _blocks(_frames(400), 10),
        n_frames=400,
        chunk=5,
        dtype=np.dtype(np.uint8),
        peak_frames=None,
        video=tmp_path / "v.avi",
    )
    with pytest.raises(OSError, match="No space left"):
        feed.write_into(movie, tmp_path / "s.zarr")
    feed.stop()
    assert feed.written == 0 and feed.decoded < 400  # the decoder stopped early
    assert not {"ingest-decode", "ingest-compress"} & {t.name for t in threading.enumerate()}
