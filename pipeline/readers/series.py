"""Numbered file series: the chunks of one recording (``0.avi``, ``msCam1.avi``, TIFF parts)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from cellsift.schemas import InputFormatError

logger = logging.getLogger(__name__)

__all__ = ["numbered_series"]

_NUMBERED = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)$")


def numbered_series(
    folder: Path,
    suffixes: Iterable[str],
    *,
    field_name: str = "video",
    prefer: Sequence[str] = (),
    what: str = "video chunk",
) -> list[Path]:
    """Return the numbered files of a folder in order, checking for gaps and duplicates.

    Files are grouped by the text before their trailing number (``""`` for ``0.avi``,
    ``"msCam"`` for ``msCam1.avi``, ``"org_part"`` for ``org_part1.avi``). Numbering
    starts at 0 for bare numbers and at 0 or 1 for a prefix.

    Parameters
    ----------
    folder
        The folder.
    suffixes
        Accepted suffixes, lower case with the dot, e.g. ``(".avi",)``.
    field_name
        Manifest column named in errors.
    prefer
        Prefixes to take when a folder holds several series (e.g. ``("mscam",)`` in a
        Miniscope V3 folder that also holds ``behavCam*.avi``), lower case.
    what
        Noun used in error messages.

    Returns
    -------
    list of Path
        In frame order. A single file with no number is returned alone.

    Raises
    ------
    InputFormatError
        No files, several unrelated series, a missing number or a number used twice.
    """
    wanted = {s.lower() for s in suffixes}
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in wanted and not p.name.startswith(".")
    ]
    groups: dict[str, dict[int, list[Path]]] = {}
    loose: list[Path] = []
    for path in files:
        match = _NUMBERED.match(path.stem)
        if match is None:
            loose.append(path)
            continue
        groups.setdefault(match["prefix"], {}).setdefault(int(match["number"]), []).append(path)
    if not groups:
        if len(loose) == 1:
            return loose
        names = ", ".join(sorted(p.name for p in loose)[:5])
        raise InputFormatError(
            f"no numbered {what}s ({'/'.join(sorted(wanted))}) in the folder"
            + (f"; found {names}" if names else ""),
            path=folder,
            field=field_name,
            fix=f"point the manifest's {field_name} column at the folder holding 0.avi, 1.avi, ... "
            "(or msCam1.avi, ...), or at one file",
        )
    if len(groups) > 1:
        chosen = [g for g in groups if g.lower() in prefer]
        if len(chosen) != 1:
            listing = ", ".join(f"{g or '<number>'}*" for g in sorted(groups))
            raise InputFormatError(
                f"the folder holds several numbered series ({listing})",
                path=folder,
                field=field_name,
                fix=f"move the other series away or point {field_name} at one file",
            )
        others = sorted(g for g in groups if g != chosen[0])
        logger.info("%s: using the %s* series, ignoring %s", folder, chosen[0], others)
        prefix = chosen[0]
    else:
        prefix = next(iter(groups))
    numbered = groups[prefix]
    suffix = next(iter(numbered.values()))[0].suffix
    for number, paths in sorted(numbered.items()):
        if len(paths) > 1:
            raise InputFormatError(
                f"{what} number {number} appears twice ({', '.join(sorted(p.name for p in paths))})",
                path=folder,
                field=field_name,
                fix="keep one file per chunk number",
            )
    if loose:
        logger.warning(
            "%s: ignoring files that are not numbered %ss: %s", folder, what, sorted(p.name for p in loose)
        )
    numbers = sorted(numbered)
    start = 0 if prefix == "" or numbers[0] == 0 else 1
    missing = sorted(set(range(start, numbers[-1] + 1)) - set(numbers))
    if missing:
        names = ", ".join(f"{prefix}{i}{suffix}" for i in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InputFormatError(
            f"{what} {names} is missing (found {len(numbers)} chunks up to {prefix}{numbers[-1]}{suffix})",
            path=folder / f"{prefix}{missing[0]}{suffix}",
            field=field_name,
            fix="copy the missing chunk from the acquisition computer, or remove the later chunks",
        )
    return [numbered[i][0] for i in numbers]
