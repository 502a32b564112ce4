"""The sampler of a seeded study: TPE reseeded for each trial from (seed, trial number).

A single seeded TPE sampler draws from one generator that starts over in every process,
so running ``nndl tune --seed N`` again would propose the flags of the first run again.
Seeding each trial from the seed and its number (unique in a study) makes a rerun go on
where the study is, workers with the same seed propose different flags, and a study's
trials depend on its seed and history only, not on how runs and workers split them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from optuna.samplers import BaseSampler, TPESampler

__all__ = ["TrialSeededSampler", "trial_seed"]


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial ``number`` of a study seeded with ``seed``."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class TrialSeededSampler(BaseSampler):
    """Optuna's TPE (``constant_liar=True``), a fresh one per trial seeded with
    :func:`trial_seed`."""

    def __init__(self, seed: int):
        self.seed = seed
        self._tpe = self._make(0)

    def _make(self, number: int) -> TPESampler:
        return TPESampler(seed=trial_seed(self.seed, number), constant_liar=True)

    def before_trial(self, study: Any, trial: Any) -> None:
        self._tpe = self._make(trial.number)
        self._tpe.before_trial(study, trial)

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        return self._tpe.infer_relative_search_space(study, trial)

    def sample_relative(self, study: Any, trial: Any, search_space: dict[str, Any]):
        return self._tpe.sample_relative(study, trial, search_space)

    def sample_independent(self, study: Any, trial: Any, param_name: str, distribution: Any):
        return self._tpe.sample_independent(study, trial, param_name, distribution)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self._tpe.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._tpe.reseed_rng()
