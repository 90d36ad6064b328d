"""export_nwb: one NWB file per session, read back by cellsift's reader, clean for nwbinspector."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

import cellsift
from cellsift.pipeline.export import EXPORTED, ExportOutcome, export_nwb
from cellsift.pipeline.readers import NwbExtractionReader, NwbVideoReader, open_video
from cellsift.schemas import FEATURE_COLUMNS, ParameterError


def _store(lake: Path, outcome: ExportOutcome) -> zarr.Group:
    record = cellsift.open_lake(lake).catalog.set_index(["cohort", "animal", "session"])
    path = record.loc[outcome.key.as_tuple(), "dataset_path"]
    return zarr.open_group(str(lake / path), mode="r")


def _read_nwb(path: Path):
    from pynwb import NWBHDF5IO

    io = NWBHDF5IO(str(path), "r")
    return io, io.read()


@pytest.fixture(scope="module")
def linked(analysed_lake: Path, tmp_path_factory: pytest.TempPathFactory) -> list[ExportOutcome]:
    """Every session of the analysed lake exported with the default (linked) video."""
    return export_nwb(analysed_lake, tmp_path_factory.mktemp("nwb_link"))


@pytest.fixture(scope="module")
def copied(analysed_lake: Path, tmp_path_factory: pytest.TempPathFactory) -> ExportOutcome:
    """The first conditioning session exported with its movie copied into the file."""
    (outcome,) = export_nwb(
        analysed_lake, tmp_path_factory.mktemp("nwb_copy"), sessions=["m01/d1_conditioning"], video="copy"
    )
    return outcome


def test_every_session_is_exported_atomically(linked):
    assert len(linked) == 4
    assert all(o.status == EXPORTED and not o.failed for o in linked), [o.line for o in linked]
    for o in linked:
        assert o.path is not None and o.path.is_file() and o.path.suffix == ".nwb"
        assert o.path.parent.name == o.key.animal and o.path.parent.parent.name == o.key.cohort
        assert o.video == "link" and not o.warnings, o.warnings
        assert {
            "PlaneSegmentation",
            "Fluorescence",
            "Deconvolved",
            "DfOverF",
            "trials",
            "cell_registry",
            "OnePhotonSeries",
            "freezing_summary",
            "BehavioralTimeSeries",
        } <= set(o.contents)
        leftovers = [p.name for p in o.path.parent.iterdir() if p.name.startswith(".")]
        assert not leftovers, leftovers
    assert any("shocks" in o.contents for o in linked)


def test_cellsift_reader_reads_footprints_and_traces_back(analysed_lake, linked, copied):
    for outcome in [*linked, copied]:
        group = _store(analysed_lake, outcome)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ext = NwbExtractionReader(outcome.path).read()
        A = np.asarray(group["A"][:])
        n_units, height, width = A.shape
        assert (ext.d1, ext.d2) == (height, width)
        np.testing.assert_array_equal(ext.unit_ids, group["unit_id"][:])
        dense = ext.A.toarray().T.reshape(n_units, height, width)  # row-major pixels
        np.testing.assert_array_equal(dense, A)
        assert ext.c_raw_source == "Fluorescence/C_raw"
        np.testing.assert_array_equal(ext.C_raw, group["C_raw"][:])
        np.testing.assert_array_equal(ext.S, group["S"][:])
        assert ext.fps == pytest.approx(float(group.attrs["fps"]), rel=0.05)


def test_nwbinspector_finds_nothing_critical(linked, copied):
    from nwbinspector import Importance, inspect_nwbfile

    with_shocks = next(o for o in linked if "shocks" in o.contents)
    without = next(o for o in linked if "shocks" not in o.contents)
    for outcome in (with_shocks, without, copied):
        messages = list(inspect_nwbfile(nwbfile_path=str(outcome.path)))
        bad = [
            f"{m.importance.name} {m.check_function_name} {m.object_name}: {m.message}"
            for m in messages
            if m.importance in (Importance.CRITICAL, Importance.BEST_PRACTICE_VIOLATION)
        ]
        assert not bad, "\n".join(bad)


def test_file_contents(analysed_lake, linked):
    outcome = next(o for o in linked if o.key.as_tuple() == ("tiny", "m01", "d1_conditioning"))
    lake = cellsift.open_lake(analysed_lake)
    group = _store(analysed_lake, outcome)
    io, nwb = _read_nwb(outcome.path)
    with io:
        assert nwb.subject.subject_id == "m01" and nwb.subject.species == "Mus musculus"
        assert nwb.subject.sex == "U" and nwb.subject.age == "P0D/"
        assert "conditioning" in nwb.session_description and "day 1" in nwb.session_description
        assert nwb.session_start_time.year == 2024  # the simulator's Miniscope recordingStartTime
        plane = nwb.imaging_planes["ImagingPlane"]
        assert plane.excitation_lambda == 470.0 and plane.optical_channel[0].emission_lambda == 525.0
        ophys = nwb.processing["ophys"]
        ps = ophys["ImageSegmentation"]["PlaneSegmentation"]
        cells = lake.cells.query("animal == 'm01' and session == 'd1_conditioning'").set_index("unit_id")
        cells = cells.loc[ps.id[:]]
        for name in ("area_px", "peak_to_noise", "overlap_flag", *FEATURE_COLUMNS):
            np.testing.assert_array_equal(ps[name].data[:], cells[name].to_numpy(), err_msg=name)
        assert "p_good" not in ps.colnames  # no classifier ran: the empty column is left out
        dff = ophys["DfOverF"]["dff"]
        traces = lake.sql(
            "SELECT unit_id, frame, dff FROM traces WHERE animal = 'm01' AND session = 'd1_conditioning'"
        )
        wide = traces.pivot(index="frame", columns="unit_id", values="dff")
        rois = ps.id[:][dff.rois.data[:]]
        np.testing.assert_array_equal(dff.data[:], wide[rois].to_numpy(dtype=np.float32))
        registry = ophys["cell_registry"].to_dataframe()
        assert registry["cell_key"].str.startswith("m01/").all()
        events = lake.table("events").query("animal == 'm01' and session == 'd1_conditioning'")
        tones = events[events["event"].isin(["CS+", "CS-"])].sort_values("onset_s")
        trials = nwb.trials.to_dataframe()
        np.testing.assert_allclose(trials["start_time"], tones["onset_s"])
        assert list(trials["trial_type"]) == list(tones["event"])
        shocks = nwb.events["shocks"].to_dataframe()
        np.testing.assert_allclose(shocks["timestamp"], events.loc[events["event"] == "shock", "onset_s"])
        freezing = nwb.processing["behavior"]["BehavioralTimeSeries"]["freezing"]
        assert set(np.unique(freezing.data[:])) <= {0, 1}
        assert len(nwb.processing["behavior"]["freezing_summary"]) == 4
        video = nwb.acquisition["OnePhotonSeries"]
        assert video.format == "external" and video.data.shape[0] == 0
        np.testing.assert_allclose(video.timestamps[:], group["time_s"][:])


def test_video_copy_writes_the_movie(analysed_lake, copied):
    group = _store(analysed_lake, copied)
    assert copied.video == "copy"
    with h5py.File(copied.path, "r") as handle:
        data = handle["acquisition/OnePhotonSeries/data"]
        assert data.compression == "gzip" and data.chunks[0] < data.shape[0]
        np.testing.assert_array_equal(data[:], group["movie"][:])
    reader = NwbVideoReader(copied.path)  # also what an ingest of the file would use
    blocks = np.concatenate(list(reader.iter_blocks(64)))
    np.testing.assert_array_equal(blocks, group["movie"][:])


def _split_video(lake: Path, tmp_path: Path, frames_per_file: int) -> Path:
    """Re-record m02/d1's video as chunks of ``frames_per_file`` and point its store at them."""
    from cellsift.pipeline.sim.writers import MiniscopeWriter, write_miniscope_metadata

    catalog = cellsift.open_lake(lake).catalog.set_index(["animal", "session"])
    store = zarr.open_group(str(lake / catalog.loc[("m02", "d1_conditioning"), "dataset_path"]), mode="r+")
    source = Path(store.attrs["source_video"])
    folder = tmp_path / "split" / "miniscope"
    movie = np.asarray(store["movie"][:])
    with MiniscopeWriter(
        folder,
        height=movie.shape[1],
        width=movie.shape[2],
        fps=20.0,
        codec="gray",
        frames_per_file=frames_per_file,
    ) as writer:
        writer.write(movie)
    shutil.copy(source / "timeStamps.csv", folder / "timeStamps.csv")
    write_miniscope_metadata(
        folder / "metaData.json",
        height=movie.shape[1],
        width=movie.shape[2],
        fps=20.0,
        codec="gray",
        frames_per_file=frames_per_file,
    )
    store.attrs["source_video"] = str(folder)
    return folder


def test_video_link_points_at_every_chunk_with_its_starting_frame(lake_copy, tmp_path):
    from nwbinspector import Importance, inspect_nwbfile

    folder = _split_video(lake_copy, tmp_path, frames_per_file=150)
    (outcome,) = export_nwb(lake_copy, tmp_path / "out", sessions=["tiny/m02/d1_conditioning"])
    assert outcome.video == "link", outcome.warnings
    io, nwb = _read_nwb(outcome.path)
    with io:
        video = nwb.acquisition["OnePhotonSeries"]
        files = [outcome.path.parent / f for f in video.external_file[:]]
        assert not any(Path(f).is_absolute() for f in video.external_file[:])
        assert [f.resolve() for f in files] == [folder / f"{i}.avi" for i in range(3)]
        assert list(video.starting_frame[:]) == [0, 150, 300]
        assert len(video.timestamps) == 400
    counts = [open_video(f).n_frames for f in files]
    assert counts == [150, 150, 100]
    messages = inspect_nwbfile(
        nwbfile_path=str(outcome.path), importance_threshold=Importance.BEST_PRACTICE_VIOLATION
    )
    assert not list(messages)


def test_video_none_and_a_missing_source_video(lake_copy, tmp_path):
    (none,) = export_nwb(lake_copy, tmp_path / "none", sessions=["m01/d2_extinction"], video="none")
    io, nwb = _read_nwb(none.path)
    with io:
        assert "OnePhotonSeries" not in nwb.acquisition
    catalog = cellsift.open_lake(lake_copy).catalog.set_index(["animal", "session"])
    store = zarr.open_group(str(lake_copy / catalog.loc[("m01", "d2_extinction"), "dataset_path"]), mode="r+")
    store.attrs["source_video"] = str(tmp_path / "moved-away")
    (gone,) = export_nwb(lake_copy, tmp_path / "gone", sessions=["m01/d2_extinction"])
    assert gone.status == EXPORTED and gone.video == "none"
    assert any("is gone" in w for w in gone.warnings), gone.warnings


def test_one_bad_session_does_not_stop_the_others(lake_copy, tmp_path):
    catalog = cellsift.open_lake(lake_copy).catalog.set_index(["animal", "session"])
    shutil.rmtree(lake_copy / catalog.loc[("m01", "d2_extinction"), "dataset_path"])  # store gone
    outcomes = export_nwb(
        lake_copy, tmp_path / "out", sessions=["tiny/m01/d1_conditioning", "m01/d2_extinction"], video="none"
    )
    status = {o.key.session: o for o in outcomes}
    assert status["d1_conditioning"].status == EXPORTED
    bad = status["d2_extinction"]
    assert bad.failed and bad.path is None
    assert bad.line.startswith("FAILED tiny/m01/d2_extinction: ") and "\n" not in bad.line
    assert "session store is missing" in bad.error and "cellsift ingest" in bad.error
    assert not (tmp_path / "out" / "tiny" / "m01" / "d2_extinction.nwb").exists()
    assert [p.name for p in (tmp_path / "out" / "tiny" / "m01").iterdir()] == ["d1_conditioning.nwb"]


def test_an_unprocessed_lake_exports_masks_and_traces(tiny_lake, tmp_path):
    (outcome,) = export_nwb(tiny_lake, tmp_path / "out", sessions=["m01/d1_conditioning"], video="none")
    assert outcome.status == EXPORTED
    assert any("cellsift run" in w for w in outcome.warnings) and any(
        "cellsift analyze" in w for w in outcome.warnings
    )
    assert "dff" not in outcome.contents and "trials" not in outcome.contents
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ext = NwbExtractionReader(outcome.path).read()
    assert ext.A.shape[1] == outcome.n_units > 0


def test_bad_arguments_are_refused(analysed_lake, tmp_path):
    with pytest.raises(ParameterError, match="video"):
        export_nwb(analysed_lake, tmp_path, video="stream")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="no ingested session matches 'm09/d1'"):
        export_nwb(analysed_lake, tmp_path, sessions=["m09/d1"])
    with pytest.raises(ParameterError, match="no ingested session matches 'm09/d2_extinction'"):
        export_nwb(analysed_lake, tmp_path, sessions="m09/d2_extinction")  # one bare string is one session
    with pytest.raises(ParameterError, match="colour"):
        export_nwb(analysed_lake, tmp_path, subjects={"m01": {"colour": "black"}})
    assert not list(tmp_path.iterdir())


def test_a_failed_write_keeps_the_previous_file(lake_copy, tmp_path, monkeypatch):
    from cellsift.pipeline.export import nwb_ophys

    (first,) = export_nwb(lake_copy, tmp_path / "out", sessions=["m02/d1_conditioning"], video="none")
    before = first.path.read_bytes()

    def broken(source, name):
        def read(start, stop):
            raise RuntimeError("disk on fire")

        return nwb_ophys.streamed(read, source.n_frames, (source.n_units,), np.dtype(np.float32))

    monkeypatch.setattr(nwb_ophys, "_trace_data", broken)  # fails while the file is being written
    (second,) = export_nwb(lake_copy, tmp_path / "out", sessions=["m02/d1_conditioning"], video="none")
    assert second.failed and "disk on fire" in second.error
    assert first.path.read_bytes() == before
    assert [p.name for p in first.path.parent.iterdir()] == [first.path.name]


def test_an_exported_file_ingests_into_a_new_lake(analysed_lake, copied, tmp_path):
    from cellsift.pipeline.ingest import ingest_cohort

    manifest = tmp_path / "cohort.csv"
    manifest.write_text(
        "cohort,animal,session,stage,day,extraction,format\n"
        f"again,m01,d1_conditioning,conditioning,1,{copied.path},nwb\n"
    )
    (result,) = ingest_cohort(manifest, tmp_path / "lake")
    assert result.status == "ingested", result
    original = _store(analysed_lake, copied)
    again = zarr.open_group(str(tmp_path / "lake" / result.dataset_path), mode="r")
    for name in ("unit_id", "A", "C_raw", "S", "movie"):
        np.testing.assert_array_equal(again[name][:], original[name][:], err_msg=name)
