"""Tests of peak clip extraction and aligned footprint crops."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import zarr
import zarr.storage

from cellsift.pipeline.stages.clips import (
    ClipParams,
    clip_frame_indices,
    clip_windows,
    crop_footprints,
    crop_indices,
    crop_neighbour_masks,
    extract_clips,
    movie_frame_chunks,
)
from cellsift.pipeline.stages.footprints import binarize, centroids, footprints_to_sparse
from cellsift.pipeline.stages.overlap import compute_overlap
from cellsift.pipeline.stages.transients import TransientResult
from cellsift.schemas.errors import InputFormatError

T, H, W = 200, 40, 50


def index_movie(n_frames: int = T, h: int = H, w: int = W) -> np.ndarray:
    """Frame value encodes the frame index; pixels encode position (value = f*10000 + y*100 + x)."""
    f = np.arange(n_frames, dtype=np.float64)[:, None, None]
    y = np.arange(h, dtype=np.float64)[None, :, None]
    x = np.arange(w, dtype=np.float64)[None, None, :]
    return f * 10000 + y * 100 + x


def frames_of(clip: np.ndarray) -> np.ndarray:
    return np.floor(clip[:, 0, 0] / 10000).astype(int)


def test_clip_windows_and_indices_clamp_at_edges() -> None:
    p = np.array([0, 5, 100, 195, 199])
    start, stop = clip_windows(p, T)
    np.testing.assert_array_equal(start, [0, 0, 90, 185, 189])
    np.testing.assert_array_equal(stop, [11, 16, 111, 200, 200])
    idx = clip_frame_indices(p, T)
    assert idx.shape == (5, 21)
    np.testing.assert_array_equal(idx[2], np.arange(90, 111))
    np.testing.assert_array_equal(idx[0], [0] * 11 + list(range(1, 11)))
    np.testing.assert_array_equal(idx[4], list(range(189, 200)) + [199] * 10)
    with pytest.raises(InputFormatError):
        clip_windows(np.array([200]), T)
    with pytest.raises(InputFormatError):
        clip_windows(np.array([-1]), T)


def test_crop_indices_centre_and_border() -> None:
    rows, cols = crop_indices(np.array([[20.0, 25.4], [1.0, 48.6]]), (H, W), 8)
    np.testing.assert_array_equal(rows[0], np.arange(16, 24))
    np.testing.assert_array_equal(cols[0], np.arange(21, 29))  # 25.4 -> 25 at index 4
    np.testing.assert_array_equal(rows[1], [0, 0, 0, 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(cols[1], [45, 46, 47, 48, 49, 49, 49, 49])  # 48.6 -> 49


def test_clip_frames_and_pixels_from_numpy() -> None:
    movie = index_movie()
    cents = np.array([[20.0, 25.0], [2.0, 47.0]])
    peaks = [(0, np.array([100, 3])), (1, np.array([198]))]
    params = ClipParams(n_before=10, n_after=10, crop_px=8)
    clips, valid = extract_clips(movie, peaks, cents, params=params)
    assert clips.shape == (2, 2, 21, 8, 8) and clips.dtype == np.float32
    np.testing.assert_array_equal(valid, [[True, True], [True, False]])
    np.testing.assert_array_equal(frames_of(clips[0, 0]), np.arange(90, 111))
    np.testing.assert_array_equal(frames_of(clips[0, 1]), [0] * 8 + list(range(1, 14)))  # p=3
    np.testing.assert_array_equal(frames_of(clips[1, 0]), list(range(188, 200)) + [199] * 9)
    assert np.all(clips[1, 1] == 0)  # missing peak slot zero-filled
    # crop content: centroid pixel at index 4, border pixels repeated
    crop = clips[0, 0, 10]
    assert crop[4, 4] == 100 * 10000 + 20 * 100 + 25
    assert crop[0, 0] == 100 * 10000 + 16 * 100 + 21
    edge = clips[1, 0, 10]  # unit near the top-right corner, rows 0..5, cols 43..49 clamped
    rows, cols = crop_indices(cents[1:], (H, W), 8)
    np.testing.assert_array_equal(edge, 198 * 10000 + rows[0][:, None] * 100 + cols[0][None, :])


def test_requests_as_transient_results_and_k_peaks() -> None:
    movie = index_movie()
    res = [
        TransientResult(np.array([50, 60, 70]), np.ones(3), 3, 1.0, 0.0, 5.0, 1.0),
        TransientResult(np.array([120]), np.ones(1), 0, 1.0, 0.0, 1.0, 0.0),
    ]
    clips, valid = extract_clips(movie, res, np.array([[10.0, 10.0], [30.0, 30.0]]), k_peaks=2)
    assert clips.shape[:2] == (2, 2)
    np.testing.assert_array_equal(valid, [[True, True], [True, False]])
    assert frames_of(clips[0, 1])[10] == 60


def test_bad_requests_raise() -> None:
    movie = index_movie()
    with pytest.raises(InputFormatError):
        extract_clips(movie, [(5, np.array([10]))], np.zeros((2, 2)))
    with pytest.raises(InputFormatError):
        extract_clips(movie, [(0, np.array([T]))], np.zeros((1, 2)))
    with pytest.raises(InputFormatError):
        extract_clips(movie, [(0, np.array([10]))], np.array([[np.nan, 1.0]]))


class ReadCounter:
    """Proxy of a (frame, y, x) array that records every frame slice read."""

    def __init__(self, arr: Any) -> None:
        self.arr, self.shape, self.chunks, self.dtype = arr, arr.shape, arr.chunks, arr.dtype
        self.reads: list[tuple[int, int]] = []

    def __getitem__(self, key: Any) -> np.ndarray:
        assert isinstance(key, slice) and key.step in (None, 1)
        self.reads.append((key.start, key.stop))
        return self.arr[key]


class CountingStore(zarr.storage.WrapperStore):
    """Counts store gets per key, i.e. how often each stored chunk is fetched."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.gets: Counter[str] = Counter()

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        self.gets[key] += 1
        return await self._store.get(key, prototype, byte_range)


def test_zarr_chunks_read_at_most_once_and_only_needed(tmp_path: Path) -> None:
    path = tmp_path / "movie.zarr"
    src = zarr.open_array(store=str(path), mode="w", shape=(T, H, W), chunks=(10, H, W), dtype="uint8")
    frame_ids = np.broadcast_to((np.arange(T) % 256).astype(np.uint8)[:, None, None], (T, H, W))
    src[:] = frame_ids
    store = CountingStore(zarr.storage.LocalStore(str(path), read_only=True))
    movie = ReadCounter(zarr.open_array(store=store, mode="r"))
    params = ClipParams(n_before=10, n_after=10, crop_px=6)
    # overlapping windows of several units; frames 0..199, chunks of 10
    requests = [(0, np.array([15, 40])), (1, np.array([44, 150])), (2, np.array([48])), (3, np.array([]))]
    cents = np.array([[5.0, 5.0], [20.0, 20.0], [39.0, 49.0], [10.0, 10.0]])
    clips, valid = extract_clips(movie, requests, cents, params=params)

    needed = set()
    for _, p in requests:
        for f in clip_frame_indices(p, T, params).ravel():
            needed.add(int(f) // 10)
    touched = Counter()
    for lo, hi in movie.reads:
        assert lo // 10 == (hi - 1) // 10, "one read must stay within one chunk"
        touched[lo // 10] += 1
    assert set(touched) == needed
    assert max(touched.values()) == 1
    chunk_gets = {k: v for k, v in store.gets.items() if k.startswith("c/")}
    assert max(chunk_gets.values()) == 1
    assert {int(k.split("/")[1]) for k in chunk_gets} == needed
    assert len(chunk_gets) < T // 10  # chunks 6..?, 17..19 are never read
    # content is right
    for n, (_, p) in enumerate(requests):
        for j, f in enumerate(clip_frame_indices(p, T, params)):
            np.testing.assert_array_equal(clips[n, j, :, 0, 0], f % 256)
    assert not valid[3].any()


def test_movie_frame_chunks() -> None:
    class Dask:
        shape = (25, 2, 2)
        chunks = ((10, 10, 5), (2,), (2,))

    np.testing.assert_array_equal(movie_frame_chunks(Dask(), 25), [0, 10, 20, 25])
    np.testing.assert_array_equal(movie_frame_chunks(np.zeros((250, 1, 1)), 250), [0, 100, 200, 250])


def test_footprint_crops_align_with_clips() -> None:
    """A movie whose every frame is the footprint image gives clips equal to the crops."""
    rng = np.random.default_rng(0)
    imgs = np.zeros((3, H, W), dtype=np.float32)
    yy, xx = np.mgrid[:H, :W]
    for u, (cy, cx) in enumerate([(20, 25), (1, 2), (38, 48)]):  # centre, corner, corner
        imgs[u] = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 8.0) * rng.uniform(1, 2)
    A = footprints_to_sparse(imgs)
    cents = centroids(A, (H, W))
    fp = crop_footprints(A, (H, W), cents, crop_px=12)
    assert fp.shape == (3, 12, 12) and fp.dtype == np.float32
    for u in range(3):
        movie = np.repeat(imgs[u][None], 30, axis=0)
        clips, _ = extract_clips(movie, [(u, np.array([15]))], cents, params=ClipParams(crop_px=12))
        np.testing.assert_allclose(clips[0, 0, 10], fp[u], rtol=1e-6)
    assert fp[0].max() == pytest.approx(imgs[0].max())
    assert np.unravel_index(np.argmax(fp[0]), fp[0].shape) == (6, 6)


def test_neighbour_masks() -> None:
    yy, xx = np.mgrid[:H, :W]
    discs = [((yy - 20) ** 2 + (xx - c) ** 2 <= 16) for c in (15, 21, 30)]  # 0-1 touch, 2 adjacent only
    A = footprints_to_sparse(np.stack(discs).astype(np.float32))
    masks = binarize(A)
    ov = compute_overlap(masks)
    cents = centroids(A, (H, W))
    nb = crop_neighbour_masks(masks, ov.pairs, cents, (H, W), 16)
    assert nb.shape == (3, 16, 16) and nb.dtype == bool

    def crop_of(v: int, at: int) -> np.ndarray:
        """Mask of unit v cut in unit ``at``'s crop."""
        return crop_footprints(masks[[v]], (H, W), cents[[at]], crop_px=16)[0] > 0

    np.testing.assert_array_equal(nb[0], crop_of(1, 0))
    assert 0 < nb[0].sum() < int(discs[1].sum())  # unit 1 is cut by the crop edge
    np.testing.assert_array_equal(nb[1], crop_of(0, 1))  # 2 is adjacent, not touching
    assert not nb[2].any()  # 2 touches nobody
    subset = crop_neighbour_masks(masks, ov.pairs, cents, (H, W), 16, units=[1])
    assert subset.shape == (1, 16, 16) and np.array_equal(subset[0], nb[1])
    every = crop_neighbour_masks(masks, None, cents, (H, W), 16)
    np.testing.assert_array_equal(every[1], crop_of(0, 1) | crop_of(2, 1))  # adjacent units count
    np.testing.assert_array_equal(every[2], crop_of(0, 2) | crop_of(1, 2))
    assert every[2].any() and (every[1] & ~nb[1]).any()


def test_crop_of_empty_footprint_is_zero() -> None:
    A = sp.csr_matrix((1, H * W), dtype=np.float32)
    fp = crop_footprints(A, (H, W), np.array([[10.0, 10.0]]), crop_px=4)
    assert fp.shape == (1, 4, 4) and not fp.any()


def test_the_crop_scales_with_the_sessions_cell_size():
    from cellsift.pipeline.stages import REFERENCE_CELL_DIAMETER_PX, ClipParams, session_crop_px

    def areas(d):
        return np.full(20, np.pi * (d / 2) ** 2)

    p = ClipParams()
    assert session_crop_px(areas(REFERENCE_CELL_DIAMETER_PX), p) == p.crop_px
    assert session_crop_px(areas(2 * REFERENCE_CELL_DIAMETER_PX), p) == 2 * p.crop_px
    assert session_crop_px(areas(3.0), p) == 16  # bounded below
    assert session_crop_px(areas(200.0), p) == 128  # and above
    assert session_crop_px(areas(23.0), ClipParams(scale_with_cells=False)) == p.crop_px
    assert session_crop_px(np.zeros(0), p) == p.crop_px  # no footprint: the reference size
