import numpy as np
import pytest
import xarray as xr

from cellsift.schemas import DATASET_SCHEMA_VERSION, SchemaError, validate_session_dataset


def make_dataset(n_units=3, n_frames=20, h=8, w=9):
    ds = xr.Dataset(
        {
            "A": (("unit_id", "height", "width"), np.zeros((n_units, h, w), np.float32)),
            "C": (("unit_id", "frame"), np.zeros((n_units, n_frames), np.float32)),
            "C_raw": (("unit_id", "frame"), np.zeros((n_units, n_frames), np.float32)),
            "S": (("unit_id", "frame"), np.zeros((n_units, n_frames), np.float32)),
            "movie": (("frame", "height", "width"), np.zeros((n_frames, h, w), np.uint8)),
        },
        coords={
            "unit_id": np.arange(1, n_units + 1),
            "frame": np.arange(n_frames),
            "time_s": ("frame", np.arange(n_frames) / 20.0),
        },
        attrs={
            "schema_version": DATASET_SCHEMA_VERSION,
            "cohort": "c",
            "animal": "a",
            "session": "s",
            "stage": "conditioning",
            "day": 1,
            "fps": 20.0,
            "source_format": "cnmfe_mat",
            "input_hash": "0" * 64,
        },
    )
    return ds


def test_valid_dataset_passes():
    validate_session_dataset(make_dataset(), check_values=True)


def test_missing_variable_is_named():
    ds = make_dataset().drop_vars("C_raw")
    with pytest.raises(SchemaError, match="C_raw"):
        validate_session_dataset(ds, path="s.zarr")


def test_wrong_dims_are_named():
    ds = make_dataset()
    ds["C"] = ds["C"].transpose("frame", "unit_id")
    with pytest.raises(SchemaError, match=r"field 'C'.*expected \('unit_id', 'frame'\)"):
        validate_session_dataset(ds, path="s.zarr")


def test_missing_attribute_and_bad_fps():
    ds = make_dataset()
    del ds.attrs["animal"]
    with pytest.raises(SchemaError, match="animal"):
        validate_session_dataset(ds)
    ds = make_dataset()
    ds.attrs["fps"] = 0
    with pytest.raises(SchemaError, match="fps"):
        validate_session_dataset(ds)


def test_nan_traces_are_caught_when_values_checked():
    ds = make_dataset()
    ds["C"][0, 3] = np.nan
    validate_session_dataset(ds)  # metadata only
    with pytest.raises(SchemaError, match="NaN"):
        validate_session_dataset(ds, check_values=True)


def test_duplicate_unit_ids():
    ds = make_dataset().assign_coords(unit_id=[1, 1, 2])
    with pytest.raises(SchemaError, match="unique"):
        validate_session_dataset(ds)
