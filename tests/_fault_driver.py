"""Run the ``nndl`` command (``nndl.cli.main``) with one fault injected; tests only.

    python _fault_driver.py FAULT ARGS...

runs ``nndl ARGS...`` in this process, exactly as ``python -m nndl ARGS...`` would, except
that at one chosen point it sends itself a signal or corrupts a value. The misuse tests
use it to hit points that a signal from outside could only hit by luck:

- ``sigint-forward:K``: SIGINT inside the K-th training forward pass, after batch norm
  has already updated its running statistics;
- ``sigint-update:K``: SIGINT between two parameter updates of step K;
- ``sigint-eval:K``: SIGINT inside the K-th test-mode forward pass (K=1: the accuracy
  check before the first step);
- ``sigint-save:E``: SIGINT while the checkpoint of epoch E is being written;
- ``sigterm-update:K``: SIGTERM between two parameter updates of step K;
- ``sigterm-final:K``: as ``sigterm-update:K``, and a second SIGTERM when the checkpoint
  saved on the way out is about to replace the last one (its temp file complete);
- ``sigterm-load``: SIGTERM once the data has loaded, before the run writes any file;
- ``kill-update:K``: SIGKILL between two parameter updates of step K;
- ``kill-save:E``: SIGKILL halfway through writing the checkpoint of epoch E (a
  temporary file is left behind);
- ``nan-loss:K``: the K-th training loss is NaN;
- ``pause:K``: after step K, create ``$NNDL_TEST_PAUSED`` and wait (at most 60 s) until
  ``$NNDL_TEST_RESUME`` exists.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import nndl.cli
import nndl.cli.train
import nndl.io.atomic
import nndl.optim
import nndl.solver


def main() -> int:
    fault, argv = sys.argv[1], sys.argv[2:]
    kind, _, arg = fault.partition(":")
    at = int(arg) if arg else 1
    counts = {"train": 0, "eval": 0, "param": 0}

    def fire(sig: int) -> None:
        os.kill(os.getpid(), sig)

    build_model = nndl.cli.train.build_model

    def build_wrapped(name, **kwargs):
        model = build_model(name, **kwargs)
        loss = model.loss

        def wrapped(X, y=None):
            key = "eval" if y is None else "train"
            counts[key] += 1
            counts["param"] = 0
            out = loss(X, y)
            if kind == "sigint-forward" and key == "train" and counts["train"] == at:
                fire(signal.SIGINT)  # the running statistics have moved already
            if kind == "sigint-eval" and key == "eval" and counts["eval"] == at:
                fire(signal.SIGINT)
            if kind == "nan-loss" and key == "train" and counts["train"] == at:
                out = (float("nan"), out[1])
            if kind == "pause" and key == "train" and counts["train"] == at + 1:
                Path(os.environ["NNDL_TEST_PAUSED"]).touch()
                deadline = time.monotonic() + 60
                while not Path(os.environ["NNDL_TEST_RESUME"]).exists():
                    if time.monotonic() > deadline:
                        raise SystemExit("pause: never resumed")
                    time.sleep(0.02)
            return out

        model.loss = wrapped
        return model

    nndl.cli.train.build_model = build_wrapped

    for name, rule in list(nndl.optim.UPDATE_RULES.items()):

        def update(w, dw, config=None, _rule=rule):
            counts["param"] += 1
            if counts["train"] == at and counts["param"] == 2:
                if kind == "sigint-update":
                    fire(signal.SIGINT)
                elif kind in ("sigterm-update", "sigterm-final"):
                    fire(signal.SIGTERM)
                elif kind == "kill-update":
                    fire(signal.SIGKILL)
            return _rule(w, dw, config)

        nndl.optim.UPDATE_RULES[name] = update

    save_checkpoint = nndl.solver.Solver.save_checkpoint

    def save_wrapped(solver, path, extra=None):
        if solver.epoch == at and kind == "sigint-save":
            fire(signal.SIGINT)
        if solver.epoch == at and kind == "kill-save":
            with nndl.io.atomic.atomic_open(Path(path)) as f:
                f.write(b"PK\x03\x04 half a checkpoint")
                f.flush()
                fire(signal.SIGKILL)
        return save_checkpoint(solver, path, extra)

    nndl.solver.Solver.save_checkpoint = save_wrapped

    replace = os.replace

    def replace_wrapped(src, dst):
        # Steps after K: only the save on the way out replaces the checkpoint.
        if kind == "sigterm-final" and Path(dst).name == "checkpoint.npz" and counts["train"] >= at:
            fire(signal.SIGTERM)
        return replace(src, dst)

    os.replace = replace_wrapped

    load_cifar = nndl.cli.train.load_cifar

    def load_wrapped(*args, **kwargs):
        out = load_cifar(*args, **kwargs)
        if kind == "sigterm-load":
            fire(signal.SIGTERM)
        return out

    nndl.cli.train.load_cifar = load_wrapped
    return nndl.cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
