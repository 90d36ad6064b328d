"""The code blocks of README.md and docs/*.md run as written, so they cannot drift from the code.

One small demo-style lake is built per test session in a temporary folder laid out as the
docs assume (``demo/raw``, ``demo/lake``, ``demo/report``; the working directory is that
folder). Then every ```` ```bash ````, ```` ```python ```` and ```` ```sql ```` block runs:
``cellsift ...`` lines through the installed console script, Python blocks with this
interpreter, SQL through ``cellsift query``. A block that cannot run in a test is marked in
the markdown on the line before it::

    <!-- doc-test: skip (why it cannot run here) -->

and a long block that can run with smaller options ``<!-- doc-test: slow -->``: its
``cellsift simulate`` gets a small cohort (:data:`SMALL_COHORT`). Everywhere, ``cellsift run``
and ``cellsift analyze`` get one worker and a free dashboard port (the test machine's two
cores and ports, not the user's). The lake is built with the README's own command lines;
a block repeating one of them verbatim reuses that result instead of computing it twice.
Every ``cellsift`` line of every block, also skipped and plain ```` ``` ```` ones, must
name a real command with real options.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from cellsift.cli import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent
RUN_LANGS = ("bash", "python", "sql")
MARK = re.compile(r"<!--\s*doc-test:\s*(?P<kind>[\w-]+)\s*(?:\((?P<reason>[^)]*)\))?\s*-->")
FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\s*$")

#: Options a ``slow`` block's ``cellsift simulate`` gets: the test's small demo cohort.
SMALL_COHORT = ("--animals", "2", "--frames", "600", "--height", "96", "--width", "96")
#: Commands that start a local Dask cluster: one worker, any free dashboard port.
DASK_COMMANDS = {
    "ingest": ("--workers", "1", "--dashboard-port", "0"),
    "run": ("--workers", "1", "--dashboard-port", "0"),
    "analyze": ("--workers", "1", "--dashboard-port", "0"),
}
#: How the lake is built: the README's lines ("The commands", the analysis tables), ``slow``.
DEMO_BUILD = (
    "cellsift simulate demo/raw --animals 3 --frames 2000 --seed 0",
    "cellsift ingest demo/raw --lake demo/lake",
    "cellsift run --lake demo/lake",
    "cellsift analyze --lake demo/lake",
    "cellsift report --lake demo/lake --out demo/report",
)


@dataclass(frozen=True)
class Block:
    """One fenced code block of a markdown file and its ``doc-test`` mark (if any)."""

    path: Path
    line: int
    lang: str
    text: str
    mark: str | None
    reason: str | None

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def parse_blocks(path: Path) -> list[Block]:
    """The fenced blocks of ``path`` with the mark on the line before each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        mark = MARK.fullmatch(lines[i - 1].strip()) if i > 0 else None
        blocks.append(
            Block(
                path,
                i + 1,
                fence["lang"].lower(),
                "\n".join(lines[i + 1 : end]),
                mark["kind"] if mark else None,
                (mark["reason"] or "").strip() if mark else None,
            )
        )
        i = end + 1
    return blocks


def shell_commands(text: str) -> list[list[str]]:
    """The commands of a shell block as argument lists (continuations and quoted newlines joined)."""
    commands: list[list[str]] = []
    pending = ""
    for line in text.splitlines():
        pending = f"{pending}\n{line}" if pending else line
        if pending.rstrip().endswith("\\"):
            continue
        try:
            words = shlex.split(pending.replace("\\\n", " "), comments=True)
        except ValueError:  # an open quote: the command goes on on the next line
            continue
        commands += split_chain(words)
        pending = ""
    if pending.strip():
        raise AssertionError(f"unterminated command: {pending!r}")
    return commands


def split_chain(words: list[str]) -> list[list[str]]:
    """Split ``a && b ; c`` into its commands."""
    commands: list[list[str]] = [[]]
    for word in words:
        if word in {"&&", ";", "||"}:
            commands.append([])
        else:
            commands[-1].append(word)
    return [c for c in commands if c]


ALL_BLOCKS = [b for path in DOCS for b in parse_blocks(path)]
RUNNABLE = [b for b in ALL_BLOCKS if b.lang in RUN_LANGS and b.mark != "skip"]


@dataclass
class Demo:
    """The demo folder and the results of the command lines already run in it."""

    cwd: Path
    done: dict[tuple[str, ...], subprocess.CompletedProcess[str]] = field(default_factory=dict)

    def cellsift(self, words: list[str], *, slow: bool) -> subprocess.CompletedProcess[str]:
        """Run ``cellsift words[1:]`` (adapted to the test machine) once; return its result."""
        argv = [*words[1:], *DASK_COMMANDS.get(words[1], ())]
        if slow and words[1] == "simulate":
            argv += SMALL_COHORT
        key = tuple(argv)
        if key not in self.done:
            self.done[key] = subprocess.run(
                [str(BIN / "cellsift"), *argv], cwd=self.cwd, capture_output=True, text=True, timeout=600
            )
        return self.done[key]


def _check(words: list[str] | str, proc: subprocess.CompletedProcess[str]) -> None:
    shown = " ".join(words) if isinstance(words, list) else words
    assert proc.returncode == 0, (
        f"{shown}\nexit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    assert "Traceback" not in proc.stderr, f"{shown}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """A small simulated demo cohort in ``<tmp>/demo``, ingested, run, analysed and reported."""
    d = Demo(tmp_path_factory.mktemp("docs"))
    for line in DEMO_BUILD:
        words = shlex.split(line)
        _check(words, d.cellsift(words, slow=True))
    return d


def test_every_mark_is_known_and_explained():
    marks = [(b, b.mark) for b in ALL_BLOCKS if b.mark]
    for block, kind in marks:
        assert kind in {"skip", "slow"}, f"{block.name}: unknown doc-test mark {kind!r}"
        if kind == "skip":
            assert block.reason, f"{block.name}: say why the block is skipped: <!-- doc-test: skip (why) -->"
    for path in DOCS:  # a mark always sits right above a block
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if "doc-test" in line and line.strip().startswith("<!--"):
                assert i + 1 < len(lines) and FENCE.match(lines[i + 1]), (
                    f"{path.name}:{i + 1}: mark without a block"
                )
    skipped = [b for b, kind in marks if kind == "skip"]
    print(f"\n{len(RUNNABLE)} doc blocks run, {len(skipped)} skipped:")
    for b in skipped:
        print(f"  {b.name}: {b.reason}")
    assert RUNNABLE and len(skipped) < len(RUNNABLE)


def _documented_commands() -> list[tuple[Block, list[str]]]:
    found = []
    for block in ALL_BLOCKS:
        if block.lang == "bash":
            commands = shell_commands(block.text)
        elif block.lang == "":  # plain blocks: only lines that are cellsift commands
            lines = [ln for ln in block.text.splitlines() if re.match(r"cellsift [a-z]", ln)]
            commands = [c for ln in lines for c in split_chain(shlex.split(ln, comments=True))]
        else:
            continue
        found += [(block, words) for words in commands if words and words[0] == "cellsift"]
    return found


@pytest.mark.parametrize(
    ("block", "words"), _documented_commands(), ids=lambda x: x.name if isinstance(x, Block) else ""
)
def test_documented_command_lines_parse(block: Block, words: list[str]):
    """Every ``cellsift`` line names an existing command and options (placeholders are fine)."""
    missing = typer.BadParameter  # MissingParameter's base, in the click that typer uses
    command, name, args, parent = typer.main.get_command(app), "cellsift", list(words[1:]), None
    while True:
        try:
            ctx = command.make_context(name, list(args), parent=parent)
        except Exception as exc:  # a missing required option is fine: the line shows a part
            if type(exc).__name__ == "MissingParameter" and isinstance(exc, missing):
                return
            raise AssertionError(f"{block.name}: {' '.join(words)}: {exc}") from None
        rest = [*getattr(ctx, "_protected_args", getattr(ctx, "protected_args", [])), *ctx.args]
        if not hasattr(command, "resolve_command") or not rest:
            return
        try:
            name, command, args = command.resolve_command(ctx, rest)
        except Exception as exc:
            raise AssertionError(f"{block.name}: {' '.join(words)}: {exc}") from None
        parent = ctx


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.name)
def test_doc_block_runs(block: Block, demo: Demo):
    slow = block.mark == "slow"
    if block.lang == "python":
        proc = subprocess.run(
            [sys.executable, "-c", block.text], cwd=demo.cwd, capture_output=True, text=True, timeout=300
        )
        _check(block.name, proc)
    elif block.lang == "sql":
        result = CliRunner().invoke(app, ["query", "--lake", str(demo.cwd / "demo" / "lake"), block.text])
        assert result.exit_code == 0, f"{block.name}\n{result.output}"
        assert re.search(r"\(\d+ rows\)", result.output), result.output
    else:
        commands = shell_commands(block.text)
        others = [" ".join(w) for w in commands if w[0] != "cellsift"]
        assert not others, (
            f"{block.name}: not a cellsift command: {others}; mark the block doc-test: skip (why)"
        )
        for words in commands:
            _check(words, demo.cellsift(words, slow=slow))
