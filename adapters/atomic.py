"""Atomic file output: every writer in ndwconv goes through ``atomic_write``.

A file is written to a temporary file in the destination's own folder and then moved
into place with ``os.replace``, so a reader sees either the old file or the complete new
one, and a failure (or a kill) never leaves a half-written output under the real name.

Temporary files are hidden and carry the name of the file they are for, a fixed marker,
the host and the id of the process writing them::

    .NAME.ndwtmp-HOST-PID-RANDOM.SUFFIX

They are removed on failure. A process killed outright (``kill -9``, a power cut) cannot
remove its own, so each :func:`atomic_write` and :func:`scratch_file` for ``NAME`` first
removes the temporaries for the same ``NAME`` in the same folder that were made on this
host by a process that no longer runs: the next run of the same command tidies up after a
killed one. Files of a process that still runs, files made on another host, and files
not following this pattern exactly are never touched.

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
import re
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["atomic_write", "remove_stale_temporaries", "scratch_file", "write_json"]

_MARKER = "ndwtmp"


def _host() -> str:
    """This host's name, reduced to characters that cannot be confused with the separators."""
    return re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname()) or "localhost"


def _prefix(name: str, pid: int | None = None) -> str:
    """``.NAME.ndwtmp-HOST-PID-`` for this host and ``pid`` (this process by default)."""
    return f".{name}.{_MARKER}-{_host()}-{os.getpid() if pid is None else pid}-"


def _alive(pid: int) -> bool:
    """Whether a process with id ``pid`` runs on this host."""
    if pid <= 0:
        return True  # not a process of ours: never treat as stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, owned by another user
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove the temporaries for ``folder/NAME`` left by killed processes on this host.

    Only hidden files named ``.NAME.ndwtmp-HOST-PID-…`` with this host's ``HOST`` and a
    ``PID`` that no longer runs are removed; anything else is left alone. With ``name``
    None, the temporaries for every name in ``folder`` (e.g. for a run folder whose
    outputs carry a new name each time, such as numbered checkpoints).

    Returns:
        The files removed.
    """
    target = ".+" if name is None else re.escape(name)
    host = re.escape(_host())
    pattern = re.compile(rf"^\.{target}\.{_MARKER}-{host}-(?P<pid>\d+)-[A-Za-z0-9_]+(\..*)?$")
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None or _alive(int(match.group("pid"))):
            continue
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _ordinary_permissions(path: str | os.PathLike) -> None:
    """Give ``path`` the mode of a plainly created file (``0o666`` less the umask).

    ``mkstemp`` creates owner-only (``0o600``) files, which would otherwise leak into
    the outputs.
    """
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _check_folder(path: Path) -> None:
    """Raise an error naming ``path`` when its folder is missing or not a folder."""
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise FileNotFoundError(f"cannot write {str(path)!r}: folder {str(folder)!r} {what}")


@contextlib.contextmanager
def scratch_file(folder: str | os.PathLike, name: str, suffix: str) -> Iterator[Path]:
    """A hidden, empty temporary file for ``folder/NAME``, removed on exit.

    For intermediate data that must live on the output's file system (e.g. a memmap
    larger than memory), and must not outlive the operation. The file is named as
    described in the module docstring; stale ones for ``NAME`` are removed first.

    Raises:
        FileNotFoundError: ``folder`` does not exist (the message names ``folder/NAME``).
        PermissionError: ``folder`` cannot be written (the message names ``folder/NAME``).
    """
    target = Path(folder) / name
    _check_folder(target)
    remove_stale_temporaries(folder, name)
    try:
        handle, tmp = tempfile.mkstemp(dir=folder, prefix=_prefix(name), suffix=suffix)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise type(exc)(
            exc.errno, f"cannot write {str(target)!r}: {reason} in folder {str(folder)!r}"
        ) from exc
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
        PermissionError: ``path``'s folder cannot be written (the message names ``path``).
        IsADirectoryError: ``path`` is a folder.
        Whatever ``write`` raises; the temporary file is then removed and ``path`` is
        left as it was.
    """
    path = Path(path)
    _check_folder(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {str(path)!r}: it is a folder")
    with scratch_file(path.parent, path.name, suffix) as tmp:
        write(tmp)
        _ordinary_permissions(tmp)
        os.replace(tmp, path)


def write_json(path: str | os.PathLike, data: object) -> None:
    """Write ``data`` as indented JSON (one trailing newline) to ``path``, atomically."""
    text = json.dumps(data, indent=1) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, "utf-8"))
