"""The output folder of a command: checked before any work, created, tidied on failure.

Commands that write results into ``-o/--out`` (``ndwconv denoise``, ``ndwconv smooth``)
refuse an unusable folder before they start, create the missing folders, and remove the
ones they created if nothing was written into them.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["check_out_folder", "make_folder", "remove_empty"]


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
