"""The kernels of a training run compiled ahead of its first step, while its data loads.

With numba installed, each compiled kernel (:mod:`nndl.kernels.numba_fused`,
:mod:`nndl.kernels.numba_winograd`) is compiled the first time a process calls it, or read
from numba's on-disk cache when an earlier process compiled it. On a fresh install the
main job's first step compiles eight kernels one after another, 7-12 seconds on one core,
after the data set has been read. :class:`KernelWarmup` moves that work forward and
spreads it over two cores:

* a thread builds a copy of the model (from the run's model name and config) and runs one
  training step of it on two random images, so every kernel the run's steps call is compiled
  or loaded while the caller reads the data set;
* if that step has to compile (numba's ``numba:compile`` event, raised only when the cache
  lacks a kernel), a helper process (``python -m nndl.train.warmup``) compiles the same
  kernels in the opposite order, last call first, each into numba's cache; the thread's
  step then loads each one the helper has finished instead of compiling it. The two meet
  in the middle; when the step is done the helper holds nothing the process lacks and is
  stopped.

The helper lists the kernels by a dry run of the step (:func:`kernel_calls`, on
:func:`nndl.kernels.parallel.record_compiled`). Nothing here changes a result: the copy of
the model is built with its own seed and never touches the run's model, data or random
state, and a kernel is the same code whichever process compiled it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..kernels import parallel
from ..models import build_model

__all__ = ["KernelWarmup", "kernel_calls", "warm_step"]


def warm_step(model: Any, input_shape: Sequence[int], dtype: Any, batch: int = 2) -> None:
    """One forward and backward pass of ``model`` on ``batch`` random images of
    ``input_shape`` (C, H, W) and class 0: the kernels a training step calls, called. A
    model with weights initialised from data (airbench's whitening conv) is initialised
    from these images first."""
    X = np.random.default_rng(0).standard_normal((batch, *input_shape)).astype(dtype)
    if getattr(model, "data_init_params", None):
        model.init_from_data(X)
    model.loss(X, np.zeros(batch, dtype=np.int64))


def kernel_calls(model: Any, input_shape: Sequence[int], dtype: Any) -> list[tuple[Any, tuple]]:
    """``(kernel, argument types)`` of each compiled kernel a training step of ``model``
    calls, in the order of their first calls, each once; found by a dry run of
    :func:`warm_step` in which no kernel runs or compiles (its values are meaningless, so
    floating-point warnings are off). Empty without numba."""
    try:
        import numba
    except ImportError:
        return []

    with parallel.record_compiled() as calls, np.errstate(all="ignore"):
        warm_step(model, input_shape, dtype)
    found: dict[tuple[Any, tuple], None] = {}
    for kernel, args in calls:
        found.setdefault((kernel, tuple(numba.typeof(a) for a in args)), None)
    return list(found)


def _model(spec: Mapping[str, Any]) -> Any:
    model = build_model(spec["model"], **spec["config"])
    if spec.get("recompute"):
        model.recompute = True  # the run's Winograd layers rebuild tiles in the backward pass
    return model


@contextlib.contextmanager
def _on_first_compile(callback: Callable[[], None]) -> Iterator[None]:
    """Call ``callback`` (once) when numba starts compiling a function, not reading one
    from its cache, in any thread of this process while the block runs."""
    try:
        from numba.core import event
    except ImportError:  # no numba: nothing will compile
        yield
        return

    class FirstCompile(event.Listener):
        def __init__(self) -> None:
            self.seen = False

        def on_start(self, ev: Any) -> None:
            if not self.seen:
                self.seen = True
                callback()

        def on_end(self, ev: Any) -> None:
            pass

    listener = FirstCompile()
    event.register("numba:compile", listener)
    try:
        yield
    finally:
        event.unregister("numba:compile", listener)


class KernelWarmup:
    """Compile or load the kernels of a model's training step in the background (see the
    module docstring): ``start()``, do other work, then ``wait()``; or as a context
    manager, which waits at the end of the block (and only stops the helper if the block
    raised).

    ``name`` and ``config`` build the copy of the model (:func:`nndl.models.build_model`);
    ``input_shape`` is one image's (C, H, W), ``dtype`` the run's; ``recompute`` as the
    run's ``Network.recompute``; ``helper=False`` keeps the work in this process. Any error
    of the warm-up is kept in ``error`` and otherwise ignored: the run meets a real one
    itself, with its own message.
    """

    def __init__(
        self,
        name: str,
        config: Mapping[str, Any],
        input_shape: Sequence[int],
        dtype: Any,
        *,
        recompute: bool = False,
        helper: bool = True,
    ) -> None:
        self.spec = {
            "model": name,
            "config": dict(config),
            "recompute": bool(recompute),
            "input_shape": [int(s) for s in input_shape],
            "dtype": np.dtype(dtype).name,
        }
        self.helper = helper
        self.error: BaseException | None = None
        self.helper_started = False
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="nndl-warmup", daemon=True)

    def start(self) -> KernelWarmup:
        self._thread.start()
        return self

    def wait(self) -> None:
        """Wait until the step has run, then stop the helper."""
        self._thread.join()
        self.stop()

    def stop(self) -> None:
        """Stop the helper process, if one runs (the thread ends with its step)."""
        with self._lock:
            self._stopped = True
            process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.terminate()
            process.wait()

    def __enter__(self) -> KernelWarmup:
        return self.start()

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if exc_type is None:
            self.wait()
        else:
            self.stop()

    def _run(self) -> None:
        try:
            model = _model(self.spec)
            self.spec["config"] = model.config  # what the helper rebuilds it from (JSON)
            shape, dtype = self.spec["input_shape"], self.spec["dtype"]
            with _on_first_compile(self._start_helper if self.helper else lambda: None):
                warm_step(model, shape, dtype)
        except Exception as exc:  # an optimisation only; see the class docstring
            self.error = exc

    def _start_helper(self) -> None:
        with self._lock:
            if self._stopped or self._process is not None:
                return
            self.helper_started = True
            # The helper imports nndl from where this process did (a source checkout too).
            root = str(Path(__file__).resolve().parents[2])
            path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
            env = {**os.environ, "PYTHONPATH": path, "OPENBLAS_NUM_THREADS": "1"}
            try:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "nndl.train.warmup"], stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                )  # fmt: skip
                self._process.stdin.write(json.dumps(self.spec).encode())
                self._process.stdin.close()
            except OSError as exc:
                self.error = exc


def main() -> int:
    """The helper process: the spec of :class:`KernelWarmup` on stdin; the step's kernels
    compiled into numba's cache, last call first, at a low CPU priority (the run's own
    work comes first)."""
    spec = json.loads(sys.stdin.read())
    with contextlib.suppress(AttributeError, OSError):
        os.nice(10)
    calls = kernel_calls(_model(spec), spec["input_shape"], spec["dtype"])
    for kernel, signature in reversed(calls):
        kernel.compile(signature)
    return 0


if __name__ == "__main__":
    sys.exit(main())
