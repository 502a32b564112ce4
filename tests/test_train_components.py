"""The training components together, in the loop the Solver is meant to adopt: a
schedule per iteration, parameter groups, sgdw, a BatchLoader with augmentation, an EMA
used for evaluation with test-time augmentation. The loss falls, and a run interrupted
and resumed from saved state ends with exactly the uninterrupted run's weights."""

from __future__ import annotations

import copy

import numpy as np

from nndl.augment import tta_predict
from nndl.cnn import ConvNet
from nndl.ema import EMA
from nndl.optim import UPDATE_RULES, resolve_param_groups
from nndl.schedules import make_schedule
from nndl.train.loader import BatchLoader

AUGMENT = [{"name": "random_crop", "pad": 1}, "alternating_flip", {"name": "cutout", "size": 2}]
GROUPS = [
    {"params": ["*.b", "*.gamma", "*.beta"], "weight_decay": 0.0},
    {"params": "*.beta", "lr_mult": 4.0},
    {"params": "*.gamma", "frozen": True},
]
OPTIM = {"learning_rate": 0.05, "momentum": 0.85, "weight_decay": 5e-3}
SCHEDULE = make_schedule({"name": "triangular", "start": 0.2, "peak_at": 0.25, "end": 0.05})


def _data(n=60, seed=0):
    """Three classes told apart by their mean colour, robust to shifts and mirrors."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    colours = np.eye(3)[y][:, :, None, None]
    X = colours + 0.5 * rng.standard_normal((n, 3, 8, 8))
    return X, y


class Run:
    """Everything a run owns; the state to save is the weights plus state_dicts."""

    def __init__(self, seed):
        X, y = _data()
        self.model = ConvNet(
            input_dim=(3, 8, 8), num_filters=(4, 8), filter_size=3, num_classes=3,
            weight_scale=0.1, dtype=np.float64, seed=seed,
        )  # fmt: skip
        self.loader = BatchLoader(X, y, 10, augment=AUGMENT, seed=7)
        self.settings = resolve_param_groups(self.model.params, GROUPS)
        self.configs = {p: {"inplace": True, **OPTIM} for p in self.model.params}
        for p, s in self.settings.items():
            if s["weight_decay"] is not None:
                self.configs[p]["weight_decay"] = s["weight_decay"]
        self.ema = EMA(0.9, every=2)
        self.t = 0
        self.losses = []

    def train(self, until, total):
        rule = UPDATE_RULES["sgdw"]
        ipe = self.loader.iterations_per_epoch
        for xb, yb in self.loader.iterate(until - self.t):
            loss, grads = self.model.loss(xb, yb)
            self.losses.append(loss)
            factor = SCHEDULE(self.t, total, ipe)  # a pure function of the counter
            for p, w in self.model.params.items():
                if self.settings[p]["frozen"]:
                    continue
                config = self.configs[p]
                config["learning_rate"] = (
                    OPTIM["learning_rate"] * factor * self.settings[p]["lr_mult"]
                )
                self.model.params[p], self.configs[p] = rule(w, grads[p], config)
            self.ema.update(self.model.params)
            self.t += 1

    def state(self):
        return copy.deepcopy(
            {
                "params": self.model.params,
                "model_state": self.model.state_arrays(),
                "configs": self.configs,
                "loader": self.loader.state_dict(),
                "ema": self.ema.state_dict(),
                "t": self.t,
            }
        )

    def load(self, state):
        state = copy.deepcopy(state)
        for p, w in state["params"].items():
            np.copyto(self.model.params[p], w)
        self.model.load_state_arrays(state["model_state"])
        self.configs = state["configs"]
        self.loader.load_state_dict(state["loader"])
        self.ema.load_state_dict(state["ema"])
        self.t = state["t"]


def test_loss_falls_frozen_stay_put_and_ema_evaluates_with_tta():
    run = Run(seed=0)
    gamma0 = run.model.params["block1.bn.gamma"].copy()
    total = 6 * run.loader.iterations_per_epoch
    run.train(total, total)
    assert np.mean(run.losses[-6:]) < 0.7 * np.mean(run.losses[:6])
    np.testing.assert_array_equal(run.model.params["block1.bn.gamma"], gamma0)
    X, y = _data(30, seed=1)
    scores_live = run.model.loss(X)
    with run.ema.swapped(run.model):
        scores = tta_predict(run.model.loss, X, "mirror_translate", batch_size=8)
    np.testing.assert_array_equal(run.model.loss(X), scores_live)  # swapped back
    assert np.mean(scores.argmax(axis=1) == y) > 0.8


def test_an_interrupted_run_resumes_exactly():
    total = 4 * 6  # 4 epochs of 6 batches
    whole = Run(seed=0)
    whole.train(total, total)

    first = Run(seed=0)
    first.train(9, total)  # stop mid-epoch 1
    saved = first.state()
    resumed = Run(seed=123)  # other initial weights: all of them come from the state
    resumed.load(saved)
    resumed.train(total, total)

    assert resumed.losses == whole.losses[9:]
    for p in whole.model.params:
        np.testing.assert_array_equal(resumed.model.params[p], whole.model.params[p])
        np.testing.assert_array_equal(resumed.ema.averages[p], whole.ema.averages[p])
