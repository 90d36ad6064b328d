"""The classification package's public API: every name resolves, torch is not imported eagerly."""

from __future__ import annotations

import subprocess
import sys

import cellsift.pipeline.classify as classify


def test_every_public_name_resolves():
    for name in classify.__all__:
        assert getattr(classify, name) is not None, name


def test_importing_classify_does_not_load_torch():
    code = "import sys, cellsift.pipeline.classify; print('torch' in sys.modules, 'sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
