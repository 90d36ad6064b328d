"""Export a lake to the ecosystem's formats.

:func:`export_nwb` writes one NWB file (Neurodata Without Borders, read with pynwb,
checked with nwbinspector, accepted by DANDI) per ingested session: metadata, the
miniscope video (linked or copied), the ROIs with cellsift's features and labels, their
traces (raw, deconvolved, ΔF/F), the conditioning trials, freezing and the cross-day cell
registry. The files are written atomically and read back by cellsift's own NWB reader.

Modules: :mod:`.nwb` (the export of a lake, outcomes, atomic writes), :mod:`.nwb_inputs`
(what is read from the lake), :mod:`.nwb_metadata` (session, subject, device, imaging
plane), :mod:`.nwb_ophys` (video, segmentation, traces), :mod:`.nwb_columns` (the
``cells`` table as ROI columns), :mod:`.nwb_behaviour` (trials, shocks, freezing, cell
registry). pynwb and hdmf are imported only when a file is built.
"""

from cellsift.pipeline.export.nwb import EXPORTED, FAILED, ExportOutcome, VideoMode, export_nwb, nwb_path
from cellsift.pipeline.export.nwb_metadata import (
    DEFAULT_SPECIES,
    EMISSION_NM,
    EXCITATION_NM,
    SUBJECT_FIELDS,
)
from cellsift.pipeline.export.nwb_ophys import VIDEO_MODES

__all__ = [
    "DEFAULT_SPECIES",
    "EMISSION_NM",
    "EXCITATION_NM",
    "EXPORTED",
    "FAILED",
    "SUBJECT_FIELDS",
    "VIDEO_MODES",
    "ExportOutcome",
    "VideoMode",
    "export_nwb",
    "nwb_path",
]
