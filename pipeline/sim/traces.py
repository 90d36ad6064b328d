"""Traces and footprint matrix of the simulated extraction.

Every unit ``i`` has a footprint ``a_i`` (unit L2 norm) and a raw trace

.. math::

    C^{raw}_i(t) = \\sum_j m_{ij}\\, \\sigma_j(t) + \\rho^{bg}_i\\, a_i \\cdot B(t)
                   - \\rho^{mot}_i\\, (a_i \\cdot \\nabla \\bar F) \\cdot d(t) + \\epsilon_i(t)

where :math:`\\sigma_j(t) = \\lVert f_j \\rVert\\, b_j\\, \\mathrm{bleach}(t)\\, \\Delta F/F_j(t)`
is neuron ``j``'s signal as its own unit would carry it, :math:`B(t)` the background
fluctuation (blobs, neuropil, bleaching) that CNMF-E's ring model leaves behind,
:math:`d(t)` the brain motion left after motion correction and
:math:`\\epsilon_i` white noise with the SD the camera noise gives under ``a_i``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from cellsift.pipeline.sim.activity import Activity
from cellsift.pipeline.sim.footprints import Unit, footprint_matrix
from cellsift.pipeline.sim.movie import Scene, expected_frame
from cellsift.pipeline.sim.population import Population

__all__ = ["raw_traces", "column_major_footprints"]


def raw_traces(
    units: list[Unit],
    sig: np.ndarray,
    dsig: np.ndarray,
    scene: Scene,
    activity: Activity,
    rng: np.random.Generator,
    pop: Population,
) -> np.ndarray:
    """Raw traces of ``units`` (see the module notes for the model).

    Parameters
    ----------
    units
        The units, in output order.
    sig, dsig
        Soma and dendrite signal of each neuron as its own unit would carry it,
        ``(n_neurons, n_frames)`` (counts).
    scene
        The session's spatial components.
    activity
        The session's activity.
    rng
        Random generator of the extraction (the white noise, one unit after another).
    pop
        The animal's population.

    Returns
    -------
    numpy.ndarray
        ``(K, n_frames)`` float64 (counts under the unit-norm footprint).
    """
    n_frames = sig.shape[1]
    if not units:
        return np.zeros((0, n_frames))
    h, w = scene.height, scene.width
    fp = footprint_matrix(units, h * w)  # (K, P) sparse
    tv = (scene.transmission * scene.vignette).astype(np.float64)
    mean_f = expected_frame(pop, scene, activity)
    var_px = scene.gain_counts * np.maximum(mean_f, 0.0) + scene.read_sd_counts**2
    noise_sd = np.sqrt(fp.multiply(fp) @ var_px) * np.array([u.noise_factor for u in units])

    # background fluctuation under each footprint: blobs + neuropil and bleaching
    bg_img = scene.bg_images.astype(np.float64) * tv  # (n_bg+1, P)
    bg_dev = activity.bg_temporal - activity.bg_temporal.mean(axis=1, keepdims=True)
    b_rel = activity.bleach / activity.bleach.mean()
    bg = (fp @ bg_img.T) @ bg_dev * activity.bleach[None, :]
    f0 = fp @ (mean_f - scene.dark_counts)
    bg += f0[:, None] * 0.1 * (b_rel - 1.0)[None, :]  # ring model leaves a little drift

    # motion residue: -(grad F . shift), projected on the footprint
    gy, gx = np.gradient(mean_f.reshape(h, w))
    g = np.stack([fp @ gy.ravel(), fp @ gx.ravel()], axis=1)  # (K, 2)
    mot = activity.motion_px - activity.motion_px.mean(axis=0)
    motion = -(g @ mot.T)

    c_raw = np.empty((len(units), n_frames))
    for i, u in enumerate(units):
        x = np.zeros(n_frames)
        for j, m in u.mixing.items():
            x += m * sig[j]
        for j, m in u.dendrite_mixing.items():
            x += m * dsig[j]
        x += u.bg_weight * bg[i] + u.motion_weight * motion[i]
        x += noise_sd[i] * rng.standard_normal(n_frames)
        c_raw[i] = x
    return c_raw


def column_major_footprints(units: list[Unit], height: int, width: int) -> sp.csc_matrix:
    """Footprints as a ``(height * width, K)`` CSC matrix, pixels in MATLAB column-major order.

    Parameters
    ----------
    units
        The units, in output order (row-major pixels ``y * width + x``).
    height, width
        Frame size (px).

    Returns
    -------
    scipy.sparse.csc_matrix
        Pixel ``(y, x)`` in row ``x * height + y``, sorted indices.
    """
    h, w = height, width
    n_px = h * w
    # footprints to MATLAB column-major pixel order: (y, x) -> x * height + y
    rows = [(u.pixels % w) * h + u.pixels // w for u in units]
    cols = [np.full(u.pixels.size, k, dtype=np.int64) for k, u in enumerate(units)]
    if units:
        a_mat = sp.csc_matrix(
            (np.concatenate([u.values for u in units]), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n_px, len(units)),
        )
        a_mat.sort_indices()
    else:
        a_mat = sp.csc_matrix((n_px, 0))
    return a_mat
