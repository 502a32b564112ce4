"""Ctrl-C between training steps: :class:`StepBoundaryInterrupts`."""

from __future__ import annotations

import signal
import threading
from typing import Any

__all__ = ["StepBoundaryInterrupts"]


class StepBoundaryInterrupts:
    """Hold Ctrl-C (SIGINT) while a training step runs; raise it between steps.

    A KeyboardInterrupt in the middle of a step would leave the model half updated (batch
    norm running statistics already moved, some parameters stepped and others not), and
    a checkpoint of that state could never be resumed exactly. So while training, SIGINT
    only sets a flag, and :meth:`check` raises KeyboardInterrupt at the next step boundary.
    Python delivers signals to the main thread only, so elsewhere, or when the program
    has installed its own SIGINT handler, nothing is changed.
    """

    def __init__(self) -> None:
        self.pending = False
        self._previous: Any = None

    def __enter__(self) -> StepBoundaryInterrupts:
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._previous = signal.signal(signal.SIGINT, self._defer)
        return self

    def _defer(self, signum: int, frame: Any) -> None:
        self.pending = True

    def check(self) -> None:
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        if exc_type is None:
            self.check()  # a Ctrl-C during the last step
