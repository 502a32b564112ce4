"""``python -m nndl.tune._child ARGS``: ``nndl ARGS`` as a trial of ``nndl tune``.

The same command as ``python -m nndl ARGS``, but on Linux it is killed when the worker
that started it dies (``PR_SET_PDEATHSIG``): a worker killed with ``kill -9`` must not
leave its trial training on, holding the run folder's lock that the trial's retry needs.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys

__all__ = ["PARENT_ENV"]

PARENT_ENV = "NNDL_TUNE_PARENT"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    parent = os.environ.pop(PARENT_ENV, None)
    if parent is None or not sys.platform.startswith("linux"):
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != int(parent):  # the worker died before the line above
        os._exit(137)


if __name__ == "__main__":
    _die_with_parent()
    # The worker stops a pruned trial with SIGINT; a worker started with SIGINT ignored
    # (a background job of a script) would pass that on, and the run would never stop.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.argv = ["nndl", *sys.argv[1:]]
    runpy.run_module("nndl", run_name="__main__", alter_sys=True)
