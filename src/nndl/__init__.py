"""nndl: a readable NumPy library for building, checking and training CNNs.

Layers are functional (``*_forward -> (out, cache)``, ``*_backward(dout, cache)``),
models expose ``params`` and ``loss(X, y)``, and :class:`nndl.solver.Solver` trains them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
