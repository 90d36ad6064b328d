"""The curated public API of cellsift.pipeline resolves lazily."""

from __future__ import annotations

import subprocess
import sys

import pytest

import cellsift.pipeline as pipeline


def test_every_public_name_resolves():
    for name in pipeline.__all__:
        assert callable(getattr(pipeline, name)), name
    with pytest.raises(AttributeError, match="no_such_thing"):
        pipeline.no_such_thing  # noqa: B018


def test_importing_the_pipeline_does_not_load_torch():
    code = "import sys, cellsift.pipeline; from cellsift.pipeline import run_pipeline; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
