"""Ctrl-C and SIGTERM between training steps: :class:`StepBoundaryInterrupts`,
:class:`Terminated` and :func:`raising_on_sigterm`."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["StepBoundaryInterrupts", "Terminated", "raise_terminated", "raising_on_sigterm"]


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch scheduler, ``timeout``, ``docker stop``, systemd) as an exception.

    A subclass of KeyboardInterrupt, so that whatever already stops cleanly on Ctrl-C
    (``except KeyboardInterrupt``: save a checkpoint, clean up) does the same on SIGTERM,
    while ``except Terminated`` placed first tells the two apart (``nndl`` exits 143, not
    130). Uncaught, it ends a script with a traceback and status 1.
    """


def raise_terminated(signum: int, frame: Any) -> None:
    """A SIGTERM handler that raises :class:`Terminated` (as Python's default SIGINT
    handler raises KeyboardInterrupt)."""
    raise Terminated


def _raise_terminated_once(signum: int, frame: Any) -> None:
    # Further SIGTERMs are ignored while the stop that this one starts runs.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


@contextmanager
def raising_on_sigterm(*, ignore_repeats: bool = False) -> Iterator[None]:
    """For the ``with`` block, SIGTERM raises :class:`Terminated` instead of ending the
    process at once, so that ``finally`` blocks run: atomic writes remove their temporary
    file, locks are released. Only in the main thread and when SIGTERM has its default
    disposition: a program that installed its own handler, or ignores SIGTERM, keeps it.

    ``ignore_repeats``: after the first SIGTERM, later ones are ignored until the block
    ends (``nndl tune`` passes SIGTERM on to its trial and waits, bounded, for it to save;
    a second signal must not cut that wait short)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL
    ):
        yield
        return
    handler = _raise_terminated_once if ignore_repeats else raise_terminated
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _holdable() -> dict[int, tuple[Any, ...]]:
    # The dispositions that mean "raise at once" or "die at once": held during a step.
    # Any other (SIG_IGN, a handler the program installed) is left alone.
    return {
        signal.SIGINT: (signal.default_int_handler,),
        signal.SIGTERM: (signal.SIG_DFL, raise_terminated),
    }


class StepBoundaryInterrupts:
    """Hold Ctrl-C (SIGINT) and SIGTERM while a training step runs; raise between steps.

    A KeyboardInterrupt in the middle of a step would leave the model half updated (batch
    norm running statistics already moved, some parameters stepped and others not), and
    a checkpoint of that state could never be resumed exactly. So while training, these
    signals only set a flag, and :meth:`check` raises at the next step boundary:
    :class:`Terminated` if a SIGTERM came, else KeyboardInterrupt. SIGINT is held only
    while it has Python's default handler (KeyboardInterrupt), SIGTERM only while it has
    its default disposition (or :func:`raise_terminated`). Python delivers signals to the
    main thread only, so elsewhere, or for a signal the program handles (or ignores)
    itself, nothing is changed.
    """

    def __init__(self) -> None:
        self.pending = False
        self.signum: int | None = None  # the signal that came (SIGTERM wins over SIGINT)
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StepBoundaryInterrupts:
        if threading.current_thread() is threading.main_thread():
            for signum, defaults in _holdable().items():
                if signal.getsignal(signum) in defaults:
                    self._previous[signum] = signal.signal(signum, self._defer)
        return self

    def _defer(self, signum: int, frame: Any) -> None:
        self.pending = True
        if self.signum != signal.SIGTERM:
            self.signum = signum

    def check(self) -> None:
        if self.pending:
            terminated = self.signum == signal.SIGTERM
            self.pending, self.signum = False, None
            raise Terminated if terminated else KeyboardInterrupt

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        while self._previous:
            signum, previous = self._previous.popitem()
            signal.signal(signum, previous)
        if exc_type is None:
            self.check()  # a signal during the last step
