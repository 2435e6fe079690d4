"""Progress reporting that behaves in terminals and in logs alike.

On a terminal, :func:`progress_bar` is a `tqdm <https://tqdm.github.io>`_ bar. Written to
anything else (a log file, a pipe, a CI console), a bar's carriage-return redraws pile up
into one enormous line per run, so there it prints plain lines instead, the way mature
command-line tools do: one when work starts, one at most every ``interval`` seconds, and
one when it ends::

    train standard: 400/2000 steps (20%), 61.2 s, loss=0.0123 samples_s=84
    train standard: 2000/2000 steps (100%), 301.0 s, loss=0.0101 samples_s=85

Both kinds take the same calls: ``update(n)``, ``set_postfix(**values)``, ``close()``, and
the ``with`` statement.

>>> import io
>>> log = io.StringIO()
>>> with progress_bar(total=3, desc="tiles", unit="tile", file=log) as bar:
...     bar.update(3)
>>> print(log.getvalue().splitlines()[-1].split(",")[0])
tiles: 3/3 tiles (100%)
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

__all__ = ["PlainProgress", "progress_bar"]


class PlainProgress:
    """A progress report as plain, newline-terminated lines (for logs and pipes)."""

    def __init__(
        self,
        total: int | None,
        desc: str = "",
        unit: str = "it",
        initial: int = 0,
        file: IO[str] | None = None,
        interval: float = 30.0,
    ):
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = initial
        self.file = file if file is not None else sys.stderr
        self.interval = float(interval)
        self._postfix = ""
        self._start = time.monotonic()
        self._last = self._start
        self._closed = False
        self._emit()

    def _emit(self) -> None:
        units = self.unit if self.unit.endswith("s") else self.unit + "s"
        if self.total:
            done = f"{self.n}/{self.total} {units} ({100 * self.n / self.total:.0f}%)"
        else:
            done = f"{self.n} {units}"
        line = f"{self.desc}: {done}, {time.monotonic() - self._start:.1f} s"
        if self._postfix:
            line += f", {self._postfix}"
        print(line, file=self.file, flush=True)
        self._last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self._last >= self.interval:
            self._emit()

    def set_postfix(self, **values: Any) -> None:
        self._postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._emit()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Disabled:
    """No output at all (``enabled=False``)."""

    n = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Disabled:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def _is_terminal(file: IO[str]) -> bool:
    isatty = getattr(file, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # closed or detached streams
        return False


def progress_bar(
    *,
    total: int | None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
    enabled: bool = True,
    leave: bool = True,
    file: IO[str] | None = None,
    interval: float = 30.0,
):
    """A tqdm bar on a terminal, plain periodic lines elsewhere, nothing when disabled.

    Args:
        total: the amount of work (``None`` when unknown).
        desc: the label that starts every line.
        unit: what is counted (``"step"``, ``"tile"``).
        initial: work already done (a resumed run).
        enabled: ``False`` prints nothing.
        leave: keep the terminal bar after it finishes (terminal only).
        file: where to write; standard error by default.
        interval: seconds between plain lines when ``file`` is not a terminal.
    """
    if not enabled:
        return _Disabled()
    stream = file if file is not None else sys.stderr
    if _is_terminal(stream):
        from tqdm import tqdm

        return tqdm(
            total=total,
            desc=desc,
            unit=unit,
            initial=initial,
            leave=leave,
            file=stream,
            dynamic_ncols=True,
        )
    return PlainProgress(total, desc, unit, initial, stream, interval)
