"""The ``nndl`` command line (the console script ``nndl = nndl.cli:main``).

Modules: :mod:`~nndl.cli.entry` (the parser and error reporting), one per command
(:mod:`~nndl.cli.train`, :mod:`~nndl.cli.evaluate`, :mod:`~nndl.cli.predict`,
:mod:`~nndl.cli.summary`, :mod:`~nndl.cli.export`), :mod:`~nndl.cli.flags` (the one table
of ``nndl train``'s settings and their defaults, ``DEFAULTS``), :mod:`~nndl.cli.run_folder`,
:mod:`~nndl.cli.recorder` (keeps a run folder up to date while training),
:mod:`~nndl.cli.report` (evaluation), :mod:`~nndl.cli.inputs` (data, images, specs,
preprocessing), :mod:`~nndl.cli.presets` (``--preset``: the accuracy ladder),
:mod:`~nndl.cli.recipe` (training settings as Solver keywords) and
:mod:`~nndl.cli.model_plan` (the model planned before any data is loaded).
"""

from .entry import main

__all__ = ["main"]
