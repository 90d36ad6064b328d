"""Timing of the per-session compute stages on a large synthetic session (500 units, 480x752).

Footprints, overlap, transients, neighbour correlations, clip extraction from a zarr movie
(with the bare cost of reading the chunks it touches), crops and features, each timed.
The movie store is written fresh under ``--work`` on every run (never reused: it could be
stale); its writing is timed apart as setup.

Usage::

    .venv/bin/python benchmarks/bench_stages.py [--frames 6000] [--work DIR] [--quick] [--out DIR]
"""

import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import zarr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import finish, fresh_dir, make_parser  # noqa: E402

from cellsift.pipeline.stages import (  # noqa: E402
    ClipParams,
    binarize,
    centroids,
    compute_overlap,
    crop_footprints,
    crop_neighbour_masks,
    detect_all,
    extract_clips,
    footprints_to_sparse,
    neighbour_trace_corr,
    session_features,
    shape_features,
    spatial_features,
)

parser = make_parser(__doc__)
parser.add_argument("--frames", type=int, default=6000, help="frames of the session (default 6000)")
parser.add_argument("--units", type=int, default=500, help="units (default 500)")
parser.add_argument("--work", type=Path, default=Path("/tmp/cellsift-bench-stages"), help="scratch folder")
args = parser.parse_args()
if args.quick:
    args.frames, args.units = 600, 60
K, H, W, T, FPS = args.units, 480, 752, args.frames, 30.0
rng = np.random.default_rng(0)
cy, cx = rng.uniform(10, H - 10, K), rng.uniform(10, W - 10, K)
sig = rng.uniform(3, 5, K)
timings = {}


def tick(name, t0):
    timings[name] = time.perf_counter() - t0
    print(f"{name:28s} {timings[name]:8.2f} s", flush=True)


# footprints: dense blocks of 32 units, as read from zarr
t0 = time.perf_counter()
blocks = []
yy, xx = np.mgrid[:H, :W]
gen = 0.0
for s in range(0, K, 32):
    g0 = time.perf_counter()
    blk = np.zeros((min(32, K - s), H, W), np.float32)
    for n, u in enumerate(range(s, min(s + 32, K))):
        y0, y1 = max(0, int(cy[u]) - 20), min(H, int(cy[u]) + 21)
        x0, x1 = max(0, int(cx[u]) - 20), min(W, int(cx[u]) + 21)
        g = np.exp(-((yy[y0:y1, x0:x1] - cy[u]) ** 2 + (xx[y0:y1, x0:x1] - cx[u]) ** 2) / (2 * sig[u] ** 2))
        g[g < 0.01] = 0
        blk[n, y0:y1, x0:x1] = g
    gen += time.perf_counter() - g0
    blocks.append(footprints_to_sparse(blk))
A = sp.vstack(blocks, format="csr")
timings["footprints_to_sparse (excl. gen)"] = time.perf_counter() - t0 - gen
print(f"footprints_to_sparse       {timings['footprints_to_sparse (excl. gen)']:8.2f} s  nnz={A.nnz}")
t0 = time.perf_counter()
masks = binarize(A)
tick("binarize", t0)
t0 = time.perf_counter()
cents = centroids(A, (H, W))
tick("centroids", t0)
t0 = time.perf_counter()
shp = shape_features(A, (H, W))
tick("shape_features", t0)
t0 = time.perf_counter()
ov = compute_overlap(masks)
tick("compute_overlap", t0)
print("   pairs", ov.pairs.shape[0], "flagged", int(ov.flagged.sum()))

# traces
t = np.arange(T)
C_raw = rng.normal(0, 1.0, (K, T))
for u in range(K):
    for on in rng.choice(T - 200, 10, replace=False):
        s = t[on : on + 200] - on
        C_raw[u, on : on + 200] += rng.uniform(4, 15) * (np.exp(-s / 24) - np.exp(-s / 3))
t0 = time.perf_counter()
tr = detect_all(C_raw, fps=FPS)
tick("detect_all", t0)
print("   mean n_transients", np.mean([r.n_transients for r in tr]))
t0 = time.perf_counter()
nc = neighbour_trace_corr(C_raw, ov.pairs)
tick("neighbour_trace_corr", t0)

# movie zarr on disk, chunks (100, H, W): always written fresh
path = fresh_dir(args.work, what="benchmark movie store") / "movie.zarr"
t0 = time.perf_counter()
z = zarr.open_array(store=path, mode="w", shape=(T, H, W), chunks=(100, H, W), dtype="uint8")
for s in range(0, T, 100):
    z[s : s + 100] = 20 + rng.integers(0, 8, (min(100, T - s), H, W), dtype=np.uint8)
tick("write movie (setup)", t0)
movie = zarr.open_array(store=path, mode="r")
params = ClipParams()
t0 = time.perf_counter()
clips, valid = extract_clips(movie, list(enumerate(r.peak_frames for r in tr)), cents, params=params)
tick("extract_clips (with reads)", t0)
print("   clips", clips.shape, f"{clips.nbytes / 1e6:.0f} MB", "valid", int(valid.sum()))
# pure read cost of the chunks touched, for comparison
need = set()
for r in tr:
    for p in r.peak_frames:
        for f in range(max(0, p - 10), min(T, p + 11)):
            need.add(f // 100)
t0 = time.perf_counter()
for c in sorted(need):
    np.asarray(movie[c * 100 : (c + 1) * 100])
tick(f"  read {len(need)} chunks only", t0)
t0 = time.perf_counter()
fp = crop_footprints(A, (H, W), cents, crop_px=32)
tick("crop_footprints", t0)
t0 = time.perf_counter()
nb = crop_neighbour_masks(masks, ov.pairs, cents, (H, W), 32)
tick("crop_neighbour_masks(pairs)", t0)
t0 = time.perf_counter()
nb2 = crop_neighbour_masks(masks, None, cents, (H, W), 32)
tick("crop_neighbour_masks(None)", t0)
t0 = time.perf_counter()
spf = spatial_features(clips, valid, fp)
tick("spatial_features", t0)
t0 = time.perf_counter()
f = session_features(
    A=A, dims=(H, W), C_raw=C_raw, fps=FPS, transients=tr, overlap=ov, clips=clips, valid=valid, fp_crops=fp
)
tick("session_features (all)", t0)
nan_free = all(np.all(np.isfinite(v)) for v in f.values())
print("NaN-free:", nan_free)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("peak RSS MiB", peak)
shutil.rmtree(args.work, ignore_errors=True)
sys.exit(
    finish(
        "bench_stages",
        args,
        {
            "units": K,
            "frames": T,
            "height": H,
            "width": W,
            "seconds": timings,
            "peak_rss_mib": peak,
            "nan_free": nan_free,
        },
    )
)
