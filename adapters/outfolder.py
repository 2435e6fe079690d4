"""The output folder of a command: checked before any work, created, tidied on failure.

Commands that write results into ``-o/--out`` (``ndwconv denoise``, ``ndwconv smooth``)
refuse an unusable folder before they start, create the missing folders, and remove the
ones they created if nothing was written into them.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["check_out_folder", "check_target", "claim_input", "make_folder", "remove_empty"]


def check_out_folder(out: str) -> None:
    """Refuse, before any work, an output folder that is a file or cannot be written."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"-o/--out {out}: is a file, not a folder for the results")
    existing = path
    while not existing.exists():  # the nearest folder that exists, which would hold it
        if existing.is_symlink():
            raise NotADirectoryError(f"-o/--out {out}: {existing} is a broken link")
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"-o/--out {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "the folder" if existing == path else f"cannot create it: {existing}"
        raise PermissionError(f"-o/--out {out}: {what} is not writable")


def make_folder(out: str) -> list[Path]:
    """Create ``out`` and any missing parents; returns the folders created, deepest last."""
    created = []
    path = Path(out)
    while not path.exists():
        created.append(path)
        path = path.parent
    os.makedirs(out, exist_ok=True)
    return created[::-1]


def remove_empty(created: list[Path]) -> None:
    """Remove the folders this run created, deepest first, where they are still empty."""
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): leave it and its parents
            return


def claim_input(
    path: str,
    file: str,
    key: tuple[str, str],
    seen: dict[tuple[str, str], str],
    owner: dict[str, str],
    kind: str,
) -> None:
    """Refuse an input that is missing, a folder, listed twice or shares its output name.

    ``file`` is the file part of ``path`` (a volume path may name a dataset inside it),
    ``key`` identifies what is read (resolved file, dataset), ``kind`` says what a file
    should be (``"a volume file"``). ``seen`` (by key) and ``owner`` (by output file name)
    hold the inputs before this one and are updated.
    """
    if not os.path.exists(file):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.isdir(file):
        raise IsADirectoryError(f"{path}: is a folder, not {kind}")
    if key in seen:
        raise ValueError(f"{path}: listed twice (as {seen[key]} before)")
    seen[key] = path
    name = os.path.normcase(os.path.basename(file))
    if name in owner:
        raise ValueError(f"{path}: has the same output file as {owner[name]}")
    owner[name] = path


def check_target(path: str, source: str | os.PathLike[str], target: Path, overwrite: bool) -> None:
    """Refuse to write ``target`` over the input file ``source``, a folder, or an existing
    file without ``overwrite``; ``path`` is the input as the user gave it."""
    if target.resolve() == Path(source).resolve() or (
        target.exists() and os.path.samefile(target, source)
    ):
        raise ValueError(f"{path}: the output {target} is the input; choose another -o folder")
    if target.is_dir():
        raise IsADirectoryError(
            f"{path}: the output {target} is a folder; remove it or choose another -o folder"
        )
    if os.path.lexists(target) and not overwrite:
        raise FileExistsError(f"{path}: the output {target} exists; pass --overwrite to replace it")
