"""nndl: a readable NumPy library for building, checking and training CNNs.

Layers are functional (``*_forward -> (out, cache)``, ``*_backward(dout, cache)``),
models expose ``params`` and ``loss(X, y)``, and :class:`nndl.solver.Solver` trains them.

Importing nndl before NumPy sets ``OPENBLAS_THREAD_TIMEOUT=1`` in the environment unless
it is already set: after every matrix product, OpenBLAS's idle worker threads otherwise
spin for about 2**28 cycles (0.1 s), and on a small machine they take the cores that
nndl's element-wise kernels run on between the products (measured on 2 cores: the
airbench94 step took 1.5x as long with two threads). OpenBLAS reads the variable once,
when NumPy loads it, so it has no effect if NumPy was imported first; set it yourself
then (``export OPENBLAS_THREAD_TIMEOUT=1``).
"""

import os as _os
import sys as _sys

if "numpy" not in _sys.modules:
    _os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "1")

__version__ = "0.1.0"

__all__ = ["__version__"]
