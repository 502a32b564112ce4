"""``Network``, a model built from a layer spec: a re-export of :mod:`nndl.models.network`."""

from .models.network import Network

__all__ = [
    "Network",
]
