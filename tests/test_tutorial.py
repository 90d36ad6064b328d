"""docs/tutorial.ipynb runs top to bottom on a small simulated lake and shows what it promises.

The lake (2 animals x conditioning/safety/extinction, 600 frames of 96x96 px) is built with
the CLI (simulate, ingest, run with the shipped classifier, analyze); the notebook is executed
with nbclient in a kernel that is this interpreter, its parameters cell pointed at that lake.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbformat import NotebookNode
from typer.testing import CliRunner

from cellsift.cli import app

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"


def _build_lake(root: Path) -> Path:
    raw, lake = root / "raw", root / "lake"
    runner = CliRunner()
    small = ["--animals", "2", "--stages", "conditioning,safety,extinction", "--frames", "600"]
    local = ["--workers", "1", "--dashboard-port", "0"]
    for args in (
        ["simulate", str(raw), *small, "--height", "96", "--width", "96", "--seed", "3"],
        ["ingest", str(raw), "--lake", str(lake)],
        ["run", "--lake", str(lake), *local, "--no-progress"],
        ["analyze", "--lake", str(lake), *local],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"cellsift {args[0]} failed:\n{result.output}"
    return lake


def _kernel_manager() -> AsyncKernelManager:
    """The "python3" kernel of this environment, never a user- or system-wide one.

    Kernel specs are looked up only in ``sys.prefix`` (where the ipykernel package puts its
    spec; its ``python`` means ``sys.executable``), falling back to ipykernel's built-in spec.
    """
    specs = KernelSpecManager(kernel_dirs=[str(Path(sys.prefix) / "share" / "jupyter" / "kernels")])
    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs)


def _tagged(nb: NotebookNode, tag: str) -> NotebookNode:
    cells = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}, found {len(cells)}"
    return cells[0]


def _text(cell: NotebookNode) -> str:
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out:
            parts.append(out.data.get("text/plain", ""))
    return "\n".join(parts)


def _snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and not any(s in p.parents for s in skip)
    }


def test_tutorial_notebook_runs_on_a_small_lake(tmp_path):
    lake = _build_lake(tmp_path)
    work, ipython = tmp_path / "work", tmp_path / "ipython"
    work.mkdir()
    before = _snapshot(tmp_path, skip=(work, ipython))

    nb = nbformat.read(NOTEBOOK, as_version=4)
    parameters = nb.cells[[c.cell_type for c in nb.cells].index("code")]
    assert "parameters" in parameters.metadata.get("tags", [])
    assert parameters.source.strip().startswith('LAKE = "demo/lake"')
    parameters.source = f"LAKE = {str(lake)!r}"
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)\nprint(sys.prefix)"))

    client = NotebookClient(
        nb,
        km=_kernel_manager(),
        kernel_name="python3",
        timeout=300,
        resources={"metadata": {"path": str(work)}},
    )
    # cleanup_kc: shut the kernel down afterwards (nbclient leaves a kernel it was given running);
    # a private IPython folder: no user profile or startup script changes the run, no history in ~
    client.execute(cleanup_kc=True, env={**os.environ, "IPYTHONDIR": str(ipython)})

    errors = [
        out for c in nb.cells if c.cell_type == "code" for out in c.outputs if out.output_type == "error"
    ]
    assert not errors, errors
    assert _text(nb.cells[-1]).splitlines() == [sys.executable, sys.prefix]

    readme = _text(_tagged(nb, "readme-query"))
    for column in ("animal", "stage", "unit_id", "cs_plus_response", "discrimination_index", "cs_plus_q"):
        assert column in readme
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert any("same table: True" in _text(c) for c in code), "pandas and SQL disagree"
    cross_day = _text(_tagged(nb, "cross-day"))
    assert "cell_key" in cross_day and "conditioning_cs_plus" in cross_day
    figure = _tagged(nb, "figure")
    assert any("image/png" in out.get("data", {}) for out in figure.outputs), "no figure"

    # the notebook only reads: the lake (and everything else outside its cwd) is untouched
    assert _snapshot(tmp_path, skip=(work, ipython)) == before
