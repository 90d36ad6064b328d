"""Validator for session datasets (one xarray Dataset per recording session)."""

from __future__ import annotations

import logging
from os import PathLike

import numpy as np
import xarray as xr

from cellsift.schemas.dims import (
    DATASET_SCHEMA_VERSION,
    FRAME,
    OPTIONAL_VARS,
    REQUIRED_ATTRS,
    REQUIRED_COORDS,
    REQUIRED_VARS,
    UNIT_ID,
)
from cellsift.schemas.errors import SchemaError

logger = logging.getLogger(__name__)

__all__ = ["validate_session_dataset"]


def validate_session_dataset(
    ds: xr.Dataset, *, path: str | PathLike[str] | None = None, check_values: bool = False
) -> None:
    """Check that ``ds`` follows the session dataset contract.

    Parameters
    ----------
    ds
        The session dataset (lazy is fine: only metadata is read unless ``check_values``).
    path
        Where the dataset came from, used in error messages.
    check_values
        Also load the traces and check for NaN/Inf (reads ``C``, ``C_raw``, ``S``).

    Raises
    ------
    SchemaError
        Naming the variable, coordinate or attribute that is wrong and how to fix it.
    """
    where = path if path is not None else "<session dataset>"
    for name, dims in {**REQUIRED_VARS, **REQUIRED_COORDS}.items():
        if name not in ds.variables:
            raise SchemaError(
                "required variable is missing",
                path=where,
                field=name,
                fix=f"write '{name}' with dims {dims}",
            )
        if tuple(ds[name].dims) != dims:
            raise SchemaError(
                f"has dims {tuple(ds[name].dims)}, expected {dims}",
                path=where,
                field=name,
                fix="transpose or rename dimensions to the contract (frame, height, width, unit_id)",
            )
    for name, dims in OPTIONAL_VARS.items():
        if name in ds.variables and tuple(ds[name].dims) != dims:
            raise SchemaError(
                f"has dims {tuple(ds[name].dims)}, expected {dims}",
                path=where,
                field=name,
                fix="transpose or rename dimensions to the contract",
            )
    for attr in REQUIRED_ATTRS:
        if attr not in ds.attrs:
            raise SchemaError(
                "required attribute is missing", path=where, field=attr, fix="re-ingest the session"
            )
    if str(ds.attrs["schema_version"]).split(".")[0] != DATASET_SCHEMA_VERSION.split(".")[0]:
        raise SchemaError(
            f"schema version {ds.attrs['schema_version']} is not compatible with {DATASET_SCHEMA_VERSION}",
            path=where,
            field="schema_version",
            fix="re-ingest the session with this cellsift version",
        )
    fps = float(ds.attrs["fps"])
    if not np.isfinite(fps) or fps <= 0:
        raise SchemaError(f"frame rate {fps} is not positive", path=where, field="fps", fix="set fps")
    unit_ids = ds[UNIT_ID].values
    if len(np.unique(unit_ids)) != len(unit_ids):
        raise SchemaError("unit ids are not unique", path=where, field=UNIT_ID, fix="renumber units")
    if ds.sizes.get(FRAME, 0) < 1:
        raise SchemaError("session has no frames", path=where, field=FRAME, fix="check the input")
    if check_values:
        for name in ("C", "C_raw", "S"):
            values = ds[name].values
            if not np.all(np.isfinite(values)):
                raise SchemaError("contains NaN or Inf", path=where, field=name, fix="re-run extraction")
    logger.debug("session dataset %s is valid", where)
