"""Ctrl-C and SIGTERM during training: stop at the end of the step, checkpoint, then exit."""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["StopRequest"]


class StopRequest:
    """Turn Ctrl-C and SIGTERM into a request to stop after the current training step.

    A second signal of either kind stops at once (``KeyboardInterrupt``); the checkpoint
    on exit is then skipped if the step was half done. Outside the main thread, where
    handlers cannot be installed, signals keep their usual effect.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
