"""One writer per run folder: a lock held for the lifetime of a run.

``ndwconv train`` and ``ndwconv compare`` (and ``fit``/``compare`` in Python) write into a
run folder for minutes or hours; a second run given the same folder by mistake would
interleave its steps into the first one's ``metrics.jsonl`` and checkpoints. ``RunLock``
prevents that: it creates ``FOLDER/.ndwconv.lock`` exclusively (``O_CREAT | O_EXCL``),
writes into it the process id, host, command line and start time, and holds an ``flock``
on it where the platform has one. The file is removed when the run ends, also on Ctrl-C
or SIGTERM. A lock left behind by a process that was killed (its pid is not alive on this
host, and nobody holds its ``flock``) is stale: the next run takes it over and says so in
one line on stderr.

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     with RunLock(folder):
    ...         try:
    ...             RunLock(folder).acquire()
    ...         except FolderInUseError as err:
    ...             print(str(err).split(":")[0])  # doctest: +ELLIPSIS
    run folder '...' is in use by another run
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

try:  # not on Windows
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "FolderInUseError", "RunLock", "check_output_folder"]

LOCK_NAME = ".ndwconv.lock"
"""The lock file's name inside a run folder."""

_FRESH_SECONDS = 10.0  # an empty lock file younger than this is being written, not stale


class FolderInUseError(RuntimeError):
    """Another live process holds the run folder's lock (the message names it)."""


def check_output_folder(path: str | Path, what: str = "--out") -> Path:
    """Check that ``path`` can be a run folder, before any work: an existing folder, or
    a new one under a writable folder.

    Raises:
        NotADirectoryError: ``path`` (or a folder above it) is an existing file.
        PermissionError: the folder it would be created in is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{what} {str(path)!r} is an existing file, not a folder")
    ancestor = path
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise NotADirectoryError(
            f"{what} {str(path)!r}: {str(ancestor)!r} is an existing file, not a folder"
        )
    if ancestor.exists() and not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {str(path)!r}: folder {str(ancestor)!r} is not writable")
    return path


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _command_line() -> str:
    args = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    text = " ".join(args)
    return text if len(text) <= 200 else text[:197] + "..."


class RunLock:
    """The lock of one run folder (a context manager; re-entrant within one object).

    Args:
        folder: the run folder (created if missing; removed again on release if this lock
            created it and it is still empty).
        quiet: do not print the one-line message when a stale lock is taken over.

    Raises (``acquire``):
        FolderInUseError: a live process holds the lock (its pid, host, command and start
            time are in the message).
    """

    def __init__(self, folder: str | Path, *, quiet: bool = False) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.quiet = quiet
        self._fd: int | None = None
        self._created_folder = False
        self._previous_sigterm: Any = None
        self._depth = 0

    # -- acquisition -------------------------------------------------------------------

    def acquire(self) -> RunLock:
        if self._fd is not None:
            self._depth += 1
            return self
        if not self.folder.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            self._created_folder = True
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            try:
                self._hold(fd)
            except BaseException:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(self.path)
                raise
            self._fd, self._depth = fd, 1
            self._catch_sigterm()
            return self
        raise FolderInUseError(f"run folder {str(self.folder)!r}: could not take its lock")

    def _hold(self, fd: int) -> None:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": _command_line(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        os.write(fd, (json.dumps(record) + "\n").encode("utf-8"))
        os.fsync(fd)

    def _take_over_if_stale(self) -> None:
        """Remove the existing lock file if its holder is gone; raise if it is alive."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return  # released meanwhile: try again
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise self._in_use(self._read(fd)) from None
            holder = self._read(fd)
            if not self._stale(holder, fd):
                raise self._in_use(holder)
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                return
            if same:
                os.unlink(self.path)
                if not self.quiet:
                    print(
                        f"ndwconv: taking over the stale lock of {str(self.folder)!r} "
                        f"({self._describe(holder)}, no longer running)",
                        file=sys.stderr,
                    )
        finally:
            os.close(fd)

    @staticmethod
    def _read(fd: int) -> dict[str, Any]:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 4096)
        try:
            holder = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return {}
        return holder if isinstance(holder, dict) else {}

    def _stale(self, holder: dict[str, Any], fd: int) -> bool:
        pid = holder.get("pid")
        if not isinstance(pid, int):  # empty or torn: stale unless it is being written
            return time.time() - os.fstat(fd).st_mtime > _FRESH_SECONDS
        if holder.get("host") != socket.gethostname():
            return False  # cannot tell whether a process on another host is alive
        return not _pid_alive(pid)

    @staticmethod
    def _describe(holder: dict[str, Any]) -> str:
        parts = [f"pid {holder.get('pid', '?')}"]
        if holder.get("host") and holder.get("host") != socket.gethostname():
            parts.append(f"on {holder['host']}")
        if holder.get("command"):
            parts.append(f"`{holder['command']}`")
        if holder.get("started"):
            parts.append(f"started {holder['started']}")
        return ", ".join(parts)

    def _in_use(self, holder: dict[str, Any]) -> FolderInUseError:
        return FolderInUseError(
            f"run folder {str(self.folder)!r} is in use by another run: "
            f"{self._describe(holder)}; wait for it to finish or choose another output folder "
            f"(if that process is gone, delete {str(self.path)!r})"
        )

    # -- SIGTERM: release the lock on the way out --------------------------------------

    def _catch_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        if previous is signal.SIG_DFL:
            self._previous_sigterm = previous
            signal.signal(signal.SIGTERM, _exit_on_sigterm)

    # -- release -----------------------------------------------------------------------

    def release(self) -> None:
        if self._fd is None:
            return
        self._depth -= 1
        if self._depth > 0:
            return
        fd, self._fd = self._fd, None
        if self._previous_sigterm is not None:
            with contextlib.suppress(ValueError):
                if signal.getsignal(signal.SIGTERM) is _exit_on_sigterm:
                    signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None
        try:
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    os.unlink(self.path)
        finally:
            os.close(fd)
        if self._created_folder:
            with contextlib.suppress(OSError):
                self.folder.rmdir()  # only if the run left it empty

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)
