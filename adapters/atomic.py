"""Atomic file output: every writer in ndwconv goes through ``atomic_write``.

A file is written to a temporary file in the destination's own folder and then moved
into place with ``os.replace``, so a reader sees either the old file or the complete new
one, and a failure (or a kill) never leaves a half-written output under the real name.
Temporary files are hidden (``.NAME.…``) and removed on failure.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> atomic_write(folder / "note.txt", lambda tmp: tmp.write_text("done"))
    >>> (folder / "note.txt").read_text(), sorted(p.name for p in folder.iterdir())
    ('done', ['note.txt'])
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_write", "scratch_file", "write_json"]


def _ordinary_permissions(path: str | os.PathLike) -> None:
    """Give ``path`` the mode of a plainly created file (``0o666`` less the umask).

    ``mkstemp`` creates owner-only (``0o600``) files, which would otherwise leak into
    the outputs.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


@contextlib.contextmanager
def scratch_file(folder: str | os.PathLike, name: str, suffix: str) -> Iterator[Path]:
    """A hidden, empty temporary file ``folder/.NAME.XXXX<suffix>``, removed on exit.

    For intermediate data that must live on the output's file system (e.g. a memmap
    larger than memory), and must not outlive the operation.
    """
    handle, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=suffix)
    os.close(handle)
    try:
        yield Path(tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write(
    path: str | os.PathLike, write: Callable[[Path], None], *, suffix: str = ".tmp"
) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it to ``path``.

    Args:
        path: the final file (its folder must exist).
        write: writes the complete content to the path it is given.
        suffix: the temporary file's suffix, for writers that choose the format by it
            (e.g. ``".nii.gz"``).

    Raises:
        FileNotFoundError: ``path``'s folder does not exist (the message names it).
        Whatever ``write`` raises; the temporary file is then removed and ``path`` is
        left as it was.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(
            f"cannot write {str(path)!r}: folder {str(folder)!r} does not exist"
        )
    with scratch_file(folder, path.name, suffix) as tmp:
        write(tmp)
        _ordinary_permissions(tmp)
        os.replace(tmp, path)


def write_json(path: str | os.PathLike, data: object) -> None:
    """Write ``data`` as indented JSON (one trailing newline) to ``path``, atomically."""
    text = json.dumps(data, indent=1) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, "utf-8"))
