"""The movie's way into a session store: decoded on one thread, compressed on another.

:class:`MovieFeed` decodes a video on a thread of its own (PyAV releases the GIL while it
decodes), copies the frames into whole zarr chunks (:func:`chunk_copies`), keeps the max
projection and the orientation check's peak frames, and hands the chunks over a small
queue to a second thread (:meth:`MovieFeed.start_writing`) that compresses and writes
them, straight to the chunk files (:class:`ChunkFiles`) when the array allows it; the
calling thread is free meanwhile (the writer writes traces and footprints) and
:meth:`MovieFeed.write_into` waits for the end. At most :data:`MOVIE_QUEUE_CHUNKS`
chunks wait between the threads, plus one being filled and one being compressed, so
memory is bounded by the chunk size. Used by :mod:`cellsift.pipeline.ingest.writer`.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, cast

import numpy as np

from cellsift.catalog import note_store_files
from cellsift.pipeline.readers import PeakFrameCheck
from cellsift.schemas import InputFormatError

if TYPE_CHECKING:
    import zarr

__all__ = [
    "MOVIE_QUEUE_CHUNKS",
    "PREFETCH_BLOCK_BYTES",
    "PREFETCH_MIB",
    "ChunkFiles",
    "MovieFeed",
    "Prefetch",
    "chunk_copies",
    "put_unless_stopped",
]

#: Chunks of decoded frames waiting to be compressed (bounds memory; two keep both threads busy).
MOVIE_QUEUE_CHUNKS: Final = 2
#: Decoded frames (MiB) the ingest's :class:`Prefetch` holds at most, whatever the session's length.
PREFETCH_MIB: Final = 256
#: Size of one prefetched block, in bytes (at least one frame).
PREFETCH_BLOCK_BYTES: Final = 8 << 20


def put_unless_stopped(q: queue.Queue[Any], stop: threading.Event, item: Any) -> bool:
    """Put ``item`` on the bounded queue ``q``, waiting while it is full, unless ``stop`` is set.

    Returns whether the item was queued (``False``: the consumer stopped).
    """
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class Prefetch:
    """Decode a video ahead on a thread of its own, before anyone asks for the frames.

    Iterating a :class:`Prefetch` yields the blocks of ``blocks`` in order (errors are
    raised where the blocks are taken); at most ``max_blocks`` decoded blocks wait, so
    memory is bounded whatever the session's length. Used to start decoding a session's
    movie while its extraction is still being read; :meth:`close` stops the thread.

    Parameters
    ----------
    blocks
        The video's frame blocks (``VideoReader.iter_blocks``), not yet started.
    max_blocks
        Decoded blocks that may wait (>= 1).
    """

    _DONE: Final = object()

    def __init__(self, blocks: Iterator[np.ndarray], *, max_blocks: int) -> None:
        self._blocks = blocks
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, max_blocks))
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._run, name="ingest-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for block in self._blocks:
                if not self._put(block):
                    return
            self._put(self._DONE)
        except BaseException as exc:  # noqa: BLE001 - raised where the blocks are taken
            self._put(exc)
        finally:
            close = getattr(self._blocks, "close", None)
            if close is not None:
                close()

    def _put(self, item: Any) -> bool:
        """Queue ``item`` unless stopped; return whether it was queued."""
        return put_unless_stopped(self._queue, self._stop, item)

    def __iter__(self) -> Prefetch:
        return self

    def __next__(self) -> np.ndarray:
        if self._finished:
            raise StopIteration
        item = self._queue.get()
        if isinstance(item, BaseException):
            self._finished = True
            raise item
        if item is self._DONE:
            self._finished = True
            raise StopIteration
        return cast(np.ndarray, item)

    def close(self) -> None:
        """Stop decoding (if still running) and wait for the thread to end."""
        self._finished = True
        self._stop.set()
        while self._thread.is_alive():
            try:  # unblock a decoder waiting on a full queue
                self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.1)


def _whole(blocks: Iterator[np.ndarray], chunk: int) -> Iterator[np.ndarray]:
    """The blocks unchanged (the default ``regroup``)."""
    return blocks


def chunk_copies(blocks: Iterator[np.ndarray], chunk: int, dtype: np.dtype) -> Iterator[np.ndarray]:
    """Copy frame blocks of any size into fresh ``(chunk, h, w)`` arrays of ``dtype``.

    Every array but the last holds exactly ``chunk`` frames (the last may be shorter);
    each is new, so the caller may keep it while the next one fills. The values are
    cast as ``astype`` casts them.
    """
    buffer: np.ndarray | None = None
    filled = 0
    for block in blocks:
        taken = 0
        while taken < len(block):
            if buffer is None:
                buffer = np.empty((chunk, *block.shape[1:]), dtype=dtype)
            n = min(chunk - filled, len(block) - taken)
            buffer[filled : filled + n] = block[taken : taken + n]
            filled, taken = filled + n, taken + n
            if filled == chunk:
                yield buffer
                buffer, filled = None, 0
    if buffer is not None and filled:
        yield buffer[:filled]


class ChunkFiles:
    """Writes whole chunks of a new zarr v3 array straight to their files in a local store.

    zarr's own write path costs about 70 ms of Python per 2.5 MB chunk (its asyncio loop
    competes with the decoding thread for the GIL); compressing with the same numcodecs
    zstd codec (which releases the GIL) and writing the file directly costs a few ms. Used
    only for arrays whose codecs are exactly ``bytes`` + ``zstd`` without checksum and
    whose chunks span every axis but the first; reading back goes through zarr as usual.
    """

    def __init__(self, array: zarr.Array, folder: Path, level: int) -> None:
        import numcodecs

        self.array, self.folder = array, folder
        #: ``{path relative to the store: (sha256, size, mtime_ns)}`` of the chunk files written
        self.digests: dict[str, tuple[str, int, int]] = {}
        self.codec = numcodecs.Zstd(level=level)
        self.dtype = np.dtype(array.dtype).newbyteorder("<")

    @classmethod
    def of(cls, array: zarr.Array, store: Path) -> ChunkFiles | None:
        """The direct writer of ``array`` in the store folder ``store``, or ``None``."""
        from zarr.codecs import BytesCodec, ZstdCodec

        meta = array.metadata
        codecs: tuple[Any, ...] = tuple(getattr(meta, "codecs", ()))
        folder = Path(store) / array.path
        if (
            getattr(meta, "zarr_format", None) != 3
            or len(codecs) != 2
            or not isinstance(codecs[0], BytesCodec)
            or not isinstance(codecs[1], ZstdCodec)
            or codecs[1].checksum
            or tuple(array.chunks[1:]) != tuple(array.shape[1:])
            or not (folder / "zarr.json").is_file()
        ):
            return None
        return cls(array, folder, int(codecs[1].level))

    def write(self, index: int, piece: np.ndarray) -> None:
        """Write ``piece`` (one whole chunk) as chunk ``index`` along the first axis."""
        key = self.array.metadata.encode_chunk_key((index,) + (0,) * (piece.ndim - 1))
        path = self.folder / key
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.codec.encode(np.ascontiguousarray(piece, dtype=self.dtype))
        path.write_bytes(data)
        stat = path.stat()  # the digest of the bytes written: the store's checksums need not read them back
        rel = f"{self.array.path}/{key}".lstrip("/")
        self.digests[rel] = (hashlib.sha256(data).hexdigest(), stat.st_size, stat.st_mtime_ns)


class MovieFeed:
    """Decodes the movie on a thread of its own and hands it over a chunk at a time.

    The decoding thread copies the frames into whole zarr chunks of the stored dtype
    (:func:`chunk_copies`, then ``regroup``: the writer's check that writes cover whole
    chunks), updates the max projection and the orientation check's peak
    frames, and queues the chunks (at most :data:`MOVIE_QUEUE_CHUNKS` waiting).
    :meth:`start_writing` compresses and writes them on a thread of its own,
    :meth:`write_into` waits for the last one; :meth:`stop` ends both early (on an error).
    """

    _DONE: Final = object()

    def __init__(
        self,
        frames: Iterator[np.ndarray],
        *,
        regroup: Callable[[Iterator[np.ndarray], int], Iterator[np.ndarray]] = _whole,
        n_frames: int,
        chunk: int,
        dtype: np.dtype,
        peak_frames: PeakFrameCheck | None,
        video: Path,
    ) -> None:
        self.frames, self.n_frames, self.chunk, self.dtype = frames, n_frames, chunk, dtype
        self.regroup = regroup
        self.peak_frames, self.video = peak_frames, video
        self.max_proj: np.ndarray | None = None
        self.decoded = 0
        self.written = 0
        self._error: BaseException | None = None
        self._writer: threading.Thread | None = None
        self._direct: ChunkFiles | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=MOVIE_QUEUE_CHUNKS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-decode", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        """Queue ``item`` unless stopped; return whether it was queued."""
        return put_unless_stopped(self._queue, self._stop, item)

    def _run(self) -> None:
        # chunk-sized copies: a decoded block is released as soon as it is copied
        blocks = self.regroup(chunk_copies(self.frames, self.chunk, self.dtype), self.chunk)
        try:
            for block in blocks:
                if self._stop.is_set():
                    break
                if self.decoded + len(block) > self.n_frames:
                    raise InputFormatError(
                        f"the video decodes to more than its {self.n_frames} frames",
                        path=self.video,
                        field="video",
                        fix="re-export the video; its headers are inconsistent",
                    )
                block_max = block.max(axis=0)
                self.max_proj = block_max if self.max_proj is None else np.maximum(self.max_proj, block_max)
                if self.peak_frames is not None:
                    self.peak_frames.take(block, self.decoded)
                if not self._put((self.decoded, block)):
                    return
                self.decoded += len(block)
            self._put(self._DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the writing thread, raised there
            self._put(exc)
        finally:  # release the decoder (open files) on this thread, also when stopped early
            for source in (blocks, self.frames):
                close = getattr(source, "close", None)
                if close is not None:
                    close()

    def start_writing(self, movie: zarr.Array, store: Path) -> None:
        """Start compressing and writing the chunks into ``movie`` on a thread of its own.

        From here on the movie streams decoder -> compressor -> chunk files without the
        calling thread, which may write the rest of the store meanwhile; :meth:`write_into`
        waits for the end. Whole chunks go straight to their files (:class:`ChunkFiles`)
        when the array is a plain zstd-compressed one in the local folder ``store``; else
        through zarr. Calling it twice does nothing.
        """
        if self._writer is not None:
            return
        self._writer = threading.Thread(
            target=self._write_all, args=(movie, store), name="ingest-compress", daemon=True
        )
        self._writer.start()

    def _write_all(self, movie: zarr.Array, store: Path) -> None:
        try:
            self._direct = direct = ChunkFiles.of(movie, store)
            while not self._stop.is_set():
                try:
                    item = self._queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is self._DONE:
                    return
                if isinstance(item, BaseException):
                    self._error = item
                    return
                pos, piece = item
                if direct is not None and len(piece) == self.chunk:
                    direct.write(pos // self.chunk, piece)
                else:
                    movie[pos : pos + len(piece)] = piece
                self.written += len(piece)
        except BaseException as exc:  # noqa: BLE001 - raised on the calling thread by write_into
            self._error = exc
            self._stop.set()  # the decoder stops too: nobody takes its chunks any more

    def write_into(self, movie: zarr.Array, store: Path) -> np.ndarray:
        """Write every frame into ``movie`` (whole chunks) as it decodes; return the max projection.

        Starts the compressing thread unless :meth:`start_writing` did, and waits until it
        has written the last chunk; an error of the decoder or the writer is raised here.
        """
        self.start_writing(movie, store)
        if self._writer is not None:
            self._writer.join()
        if self._error is not None:
            raise self._error
        if self.decoded != self.n_frames or self.written != self.n_frames or self.max_proj is None:
            raise InputFormatError(
                f"the video decodes to {self.decoded} frames, its headers say {self.n_frames}",
                path=self.video,
                field="video",
                fix="re-copy the video from the acquisition computer",
            )
        if self._direct is not None and self._direct.digests:
            note_store_files(store, self._direct.digests)
        return self.max_proj

    def stop(self) -> None:
        """Stop decoding (if still running) and wait for the thread to end."""
        self._stop.set()
        while self._thread.is_alive():
            try:  # unblock a decoder waiting on a full queue
                self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=0.1)
        if self._writer is not None:
            self._writer.join()
