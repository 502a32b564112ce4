"""Saving and restoring the state of a ``numpy.random.Generator`` as plain JSON.

Models, the Solver and the data pipeline each own a Generator; their ``state_dict()``
holds its bit generator's state (a dict of ints and strings), and ``load_state_dict()``
restores it through :func:`set_rng_state`, which accepts only the bit generators NumPy
ships (never an arbitrary ``np.random`` attribute named by a file).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BIT_GENERATORS", "rng_state", "set_rng_state"]

# The bit generators a stored state may name.
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """The JSON-serialisable state of a Generator's bit generator (a copy)."""
    return rng.bit_generator.state


def set_rng_state(rng: np.random.Generator | None, state: Any) -> np.random.Generator:
    """Return ``rng`` with ``state`` restored (a new Generator if ``rng`` is None or its bit
    generator differs); ``rng`` itself is left alone when the state is refused.

    Only the bit generators in :data:`BIT_GENERATORS` are accepted; a malformed state is
    a ``ValueError``.
    """
    name = state.get("bit_generator") if isinstance(state, dict) else None
    if name not in BIT_GENERATORS:
        raise ValueError(
            f"set_rng_state: expected the state of one of {list(BIT_GENERATORS)}, got {name!r}"
        )
    # Restored into a fresh bit generator first, so a refused state changes nothing.
    fresh = np.random.Generator(getattr(np.random, name)())
    try:
        fresh.bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise ValueError(f"set_rng_state: invalid {name} state ({exc})") from None
    if rng is None or type(rng.bit_generator).__name__ != name:
        return fresh
    rng.bit_generator.state = fresh.bit_generator.state
    return rng
