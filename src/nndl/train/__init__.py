"""Training: the :class:`~nndl.train.solver.Solver` (:mod:`.solver`), what its keywords
resolve to and their checks (:mod:`.setup`), the checks of its saved state
(:mod:`.state`), learning-rate schedules (:mod:`.schedules`), the EMA of the weights
(:mod:`.ema`), augmentation (:mod:`.augment`), the prefetching batch loader
(:mod:`.loader`), callbacks (:mod:`.callbacks`), Ctrl-C and SIGTERM at step boundaries
(:mod:`.interrupts`), the JSON specs of pluggable pieces (:mod:`.specs`) and the compiled
kernels of a run readied while its data loads (:mod:`.warmup`).

The documented modules :mod:`nndl.solver`, :mod:`nndl.schedules`, :mod:`nndl.ema`,
:mod:`nndl.augment` and :mod:`nndl.callbacks` re-export their names.
"""

__all__: list[str] = []
