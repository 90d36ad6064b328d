"""Settings of a simulated cohort and the names of its folders."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import numpy as np

from cellsift.schemas import ParameterError

__all__ = ["DEFAULT_CELL_DIAMETER_PX", "EXTRACTIONS", "SimulationConfig", "animal_name", "session_name"]

#: Median soma diameter (px) of the default population (diameters uniform in 8-15 px).
DEFAULT_CELL_DIAMETER_PX: Final = 11.5
#: Sources of the extraction output: rule-drawn artifacts, a CNMF-style factorisation of
#: the movie, or both in one cohort (sessions alternate).
EXTRACTIONS: Final = ("rules", "cnmf", "mixed")

_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: Integer settings: name, lower bound, upper bound (None: no upper bound).
_INT_SETTINGS: Final[tuple[tuple[str, int, int | None], ...]] = (
    ("n_animals", 1, 999),
    ("n_frames", 10, None),
    ("height", 16, 4096),
    ("width", 16, 4096),
    ("seed", 0, None),
)
#: Real settings: name, lower bound, upper bound, whether the lower bound is excluded.
_REAL_SETTINGS: Final[tuple[tuple[str, float, float, bool], ...]] = (
    ("fps", 0.5, 1000.0, False),
    ("cell_density", 0.0, 100.0, True),
    ("artifact_fraction", 0.0, 0.9, False),
    ("noise_scale", 0.0, 20.0, False),
    ("background_scale", 0.0, 3.0, False),
    ("motion_px", 0.0, 20.0, False),
    ("trace_scale", 1e-3, 1e3, False),
)
#: Range (px) of ``cell_diameter_px``.
_DIAMETER_RANGE: Final = (4.0, 40.0)
#: Largest expected cells x pixels of a CNMF-style extraction (its footprints are dense
#: arrays of components x pixels): about 300 x 300 px at the default cell size.
_CNMF_CELL_PIXELS: Final = 16_000_000
_NAME_FIX: Final = "use letters, digits, '_', '-' or '.', starting with a letter or digit"


def _check_int(name: str, value: object, lo: int, hi: int | None) -> int:
    """``value`` as an int in ``[lo, hi]``, else ParameterError naming the setting."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{name} must be an integer, got {value!r}", field=name)
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ParameterError(f"{name} must be {rng}, got {value!r}", field=name)
    return int(value)


def _check_real(name: str, value: object, lo: float, hi: float, *, lo_open: bool = False) -> float:
    """``value`` as a finite float in ``[lo, hi]`` (``(lo, hi]`` if ``lo_open``), else ParameterError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ParameterError(f"{name} must be a number, got {value!r}", field=name)
    v = float(value)
    if not np.isfinite(v) or v > hi or v < lo or (lo_open and v == lo):
        raise ParameterError(
            f"{name} must be in {'(' if lo_open else '['}{lo:g}, {hi:g}], got {value!r}", field=name
        )
    return v


@dataclass(frozen=True)
class SimulationConfig:
    """Settings of a simulated cohort.

    Attributes
    ----------
    n_animals
        Number of mice (``m01``, ``m02``, ...).
    stages
        Stage of each session, in order; the session of stage ``i`` is on day ``i + 1``.
        Shocks are given in the stage called ``"conditioning"`` only.
    n_frames
        Frames per session.
    fps
        Frame rate (Hz).
    height, width
        Frame size (px).
    cell_density
        In-focus neurons per 10,000 px at the default cell size (the default gives about
        37-45 cells at 160 x 160). With ``cell_diameter_px`` set, the count is scaled by
        ``(11.5 / cell_diameter_px) ** 2``: the density is per cell area (16 is about 17
        neurons per 100 cell areas), so large cells in a small field still give sensible
        counts.
    artifact_fraction
        Fraction of the extraction output that is artifacts, in [0, 0.9].
    noise_scale
        Multiplier of the shot- and read-noise SD.
    background_scale
        Multiplier of the out-of-focus background and neuropil intensity.
    motion_px
        Scale (px) of the rigid brain motion (about its SD).
    cell_diameter_px
        Median soma diameter (px), in [4, 40]; diameters are drawn uniform in
        ``[0.7, 1.3] * cell_diameter_px`` and everything sized like a cell (dendrites,
        spots, out-of-focus neurons, background fields, artifact footprints, the
        extraction's ``gSig``) scales with it. None (default): diameters uniform in
        8-15 px, the simulator's original population.
    trace_scale
        Multiplier of the extraction's trace units (``C``, ``C_raw``, ``S``), in
        [0.001, 1000]; real extractors differ by 10-100x. Default 1 (counts under a
        unit-norm footprint).
    write_c_raw
        Whether the ``.mat`` holds ``C_raw`` (False: a Minian-like export without ``YrA``).
    extraction
        Source of the extraction output: ``"rules"`` (rule-drawn artifacts, default),
        ``"cnmf"`` (a seeded CNMF-style factorisation of the simulated movie, labelled
        against the truth; ``artifact_fraction`` does not apply) or ``"mixed"`` (sessions
        alternate between the two, so every animal with two or more sessions has both).
        The CNMF-style path holds dense footprints: expected cells x pixels must stay
        under 1.6e7 (about 300 x 300 px at the default cell size and density).
    seed
        Master seed (>= 0).
    cohort
        Cohort name, written to the manifest.
    video_codec
        ``"ffv1"`` (lossless FFV1) or ``"gray"`` (uncompressed 8-bit, fourcc GREY).

    Raises
    ------
    ParameterError
        If a setting is out of range or of the wrong type.
    """

    n_animals: int = 3
    stages: tuple[str, ...] = ("conditioning", "safety", "extinction")
    n_frames: int = 2000
    fps: float = 20.0
    height: int = 160
    width: int = 160
    cell_density: float = 16.0
    artifact_fraction: float = 0.35
    noise_scale: float = 1.0
    background_scale: float = 1.0
    motion_px: float = 1.0
    seed: int = 0
    cohort: str = "demo"
    video_codec: str = "ffv1"
    cell_diameter_px: float | None = None
    trace_scale: float = 1.0
    write_c_raw: bool = True
    extraction: str = "rules"

    def __post_init__(self) -> None:
        if isinstance(self.stages, str) or not isinstance(self.stages, (tuple, list)):
            raise ParameterError(
                f"stages must be a tuple of stage names, got {self.stages!r}",
                field="stages",
                fix="pass e.g. ('conditioning', 'safety', 'extinction')",
            )
        stages = tuple(self.stages)
        object.__setattr__(self, "stages", stages)
        if not stages:
            raise ParameterError("stages must name at least one stage", field="stages")
        if not all(isinstance(st, str) and _NAME_RE.match(st) for st in stages):
            raise ParameterError(
                f"stage names must use letters, digits, '_', '-' or '.', got {stages!r}",
                field="stages",
                fix=_NAME_FIX,
            )
        if len(set(stages)) != len(stages):
            raise ParameterError(f"stage names must be unique, got {stages!r}", field="stages")
        for name, lo, hi in _INT_SETTINGS:
            object.__setattr__(self, name, _check_int(name, getattr(self, name), lo, hi))
        for rname, rlo, rhi, lo_open in _REAL_SETTINGS:
            object.__setattr__(
                self, rname, _check_real(rname, getattr(self, rname), rlo, rhi, lo_open=lo_open)
            )
        if not (isinstance(self.cohort, str) and _NAME_RE.match(self.cohort)):
            raise ParameterError(
                f"cohort must be a name of letters, digits, '_', '-' or '.', got {self.cohort!r}",
                field="cohort",
                fix=_NAME_FIX,
            )
        if self.video_codec not in ("ffv1", "gray"):
            raise ParameterError(
                f"video_codec must be 'ffv1' or 'gray', got {self.video_codec!r}", field="video_codec"
            )
        self._check_domain()

    def _check_domain(self) -> None:
        """Check the domain settings (cell size, trace units, C_raw, extraction source)."""
        if self.cell_diameter_px is not None:
            lo, hi = _DIAMETER_RANGE
            d = _check_real("cell_diameter_px", self.cell_diameter_px, lo, hi)
            object.__setattr__(self, "cell_diameter_px", d)
        if not isinstance(self.write_c_raw, (bool, np.bool_)):
            raise ParameterError(
                f"write_c_raw must be True or False, got {self.write_c_raw!r}", field="write_c_raw"
            )
        object.__setattr__(self, "write_c_raw", bool(self.write_c_raw))
        if self.extraction not in EXTRACTIONS:
            raise ParameterError(
                f"extraction must be one of {', '.join(EXTRACTIONS)}, got {self.extraction!r}",
                field="extraction",
                fix="use 'rules', 'cnmf' or 'mixed'",
            )
        n_px = self.height * self.width
        n_cells = self.cell_density * n_px / 1e4 / self.cell_scale**2
        if self.extraction != "rules" and n_cells * n_px > _CNMF_CELL_PIXELS:
            raise ParameterError(
                f"extraction {self.extraction!r} supports about {_CNMF_CELL_PIXELS:.0e} cells x pixels, "
                f"this field has {n_cells:.0f} cells x {n_px} px",
                field="extraction",
                fix="use a smaller field, larger cells, a lower cell_density or extraction='rules'",
            )

    @property
    def duration_s(self) -> float:
        """Session length (s)."""
        return self.n_frames / self.fps

    @property
    def cell_scale(self) -> float:
        """Size of a cell relative to the default population (``cell_diameter_px / 11.5``; 1 if unset)."""
        d = self.cell_diameter_px
        return 1.0 if d is None else d / DEFAULT_CELL_DIAMETER_PX

    def session_extraction(self, animal_index: int, stage_index: int) -> str:
        """Extraction source (``"rules"`` or ``"cnmf"``) of one session.

        Parameters
        ----------
        animal_index, stage_index
            0-based animal and stage (session) index.

        Returns
        -------
        str
            ``extraction`` itself unless it is ``"mixed"``; then sessions alternate in
            cohort order (animal by animal, stage by stage), starting with ``"rules"``.
        """
        if self.extraction != "mixed":
            return self.extraction
        return ("rules", "cnmf")[(animal_index * len(self.stages) + stage_index) % 2]


def animal_name(index: int) -> str:
    """Folder name of animal ``index`` (0-based): ``m01``, ``m02``, ..."""
    return f"m{index + 1:02d}"


def session_name(day: int, stage: str) -> str:
    """Folder name of a session: ``d<day>_<stage>``."""
    return f"d{day}_{stage}"
