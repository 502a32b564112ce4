"""A deterministic, prefetching loader of (augmented) minibatches: :class:`BatchLoader`.

It yields an epoch's minibatches, augmented (:mod:`nndl.augment`), preparing the next
ones in a background thread while the training step runs (NumPy releases the GIL in its
copies and arithmetic). The order and every augmentation are functions of ``(seed,
epoch, batch index)`` only, so a run resumed from ``state_dict()`` gets exactly the
batches the uninterrupted run would have.
"""

from __future__ import annotations

import numbers
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..validation import check_count, check_ndim
from .augment import Augmentation, make_augmentation

__all__ = ["BatchLoader"]


# Independent random streams of one loader, keyed (stream, epoch, batch): fixed-length
# keys, so no two streams can share a seed sequence.
_ORDER, _AUGMENT, _FLIP_BITS = 0, 1, 2


class _Prefetcher:
    """A daemon thread running ``produce(key)`` for each key, at most ``depth`` results
    ahead of the consumer: it takes a slot before producing, the consumer frees it."""

    _END = object()

    def __init__(self, produce: Callable[[Any], Any], keys: Iterator[Any], depth: int) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._slots = threading.Semaphore(depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(produce, keys), name="nndl-BatchLoader", daemon=True
        )
        self._thread.start()

    def _take_slot(self) -> bool:
        # A timeout so that a stop request is noticed while the consumer is busy.
        while not self._stop.is_set():
            if self._slots.acquire(timeout=0.05):
                return True
        return False

    def _run(self, produce: Callable[[Any], Any], keys: Iterator[Any]) -> None:
        try:
            for key in keys:
                if not self._take_slot():
                    return
                self._queue.put((True, produce(key)))
            self._queue.put((True, self._END))
        except BaseException as exc:  # handed to the consumer, raised there
            self._queue.put((False, exc))

    def get(self) -> Any:
        while True:
            try:
                ok, item = self._queue.get(timeout=0.1)
                break
            except queue.Empty:
                # Never wait forever on a thread that was stopped (close()) or is gone.
                if self._stop.is_set() or not self._thread.is_alive():
                    raise RuntimeError(
                        "BatchLoader: the loader was closed while a loop was still using it"
                    ) from None
        if not ok:
            raise item
        if item is self._END:
            raise RuntimeError("BatchLoader: the prefetch thread ran out of batches")
        self._slots.release()
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def _check_seed(fn: str, seed: Any) -> int:
    if seed is None:
        # Fresh entropy, recorded in state_dict() so that even this run can be resumed.
        return int(np.random.SeedSequence().entropy)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"{fn}: expected seed to be an int >= 0 or None, got {seed!r}")
    return int(seed)


class BatchLoader:
    """The (augmented) minibatches of a training set, epoch after epoch.

    ``BatchLoader(X, y, batch_size, augment=None, seed=0, shuffle=True, prefetch=2)``:
    an epoch has ``max(N // batch_size, 1)`` batches (the remainder is dropped, as in
    the Solver), batch ``b`` holding rows ``perm[b * batch_size : (b + 1) * batch_size]``
    of a fresh permutation each epoch (identity with ``shuffle=False``). Batch ``b`` of
    epoch ``e`` is :meth:`get_batch` ``(e, b)``, a pure function of ``(seed, e, b)``.

    Iterating yields ``(X_batch, y_batch)`` from the current position to the end of the
    epoch; :meth:`iterate` yields any number of batches across epochs. The position
    advances as batches are handed out, and :meth:`state_dict` /
    :meth:`load_state_dict` save and restore it. With ``prefetch > 0`` a background
    thread prepares up to that many batches ahead; it stops when the loop ends, breaks
    or raises (KeyboardInterrupt included), and :meth:`close` (or leaving a ``with``
    block) stops any that is still running. ``X`` and ``y`` are used, not copied.
    """

    def __init__(
        self,
        X: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        *,
        augment: Sequence[Any] | Augmentation | None = None,
        seed: int | None = 0,
        shuffle: bool = True,
        prefetch: int = 2,
    ) -> None:
        fn = "BatchLoader"
        if not (hasattr(X, "shape") and X.ndim >= 1):
            raise TypeError(f"{fn}: expected X to be an array of examples, got {type(X).__name__}")
        if not hasattr(y, "shape") or y.shape != (len(X),):
            raise ValueError(
                f"{fn}: expected y of shape ({len(X)},) to match X, got "
                f"{getattr(y, 'shape', type(y).__name__)}"
            )
        if len(X) == 0:
            raise ValueError(f"{fn}: expected at least one example, got X of shape {X.shape}")
        self.X, self.y = X, y
        self.batch_size = check_count(fn, "batch_size", batch_size, 1)
        self.augment = make_augmentation(augment)
        if self.augment.spec:
            check_ndim(fn, "X", X, 4, "(N, C, H, W) to augment")
        self.seed = _check_seed(fn, seed)
        self.shuffle = bool(shuffle)
        self.prefetch = check_count(fn, "prefetch", prefetch, 0)
        self.iterations_per_epoch = max(len(X) // self.batch_size, 1)
        self.epoch = 0
        self.position = 0
        self._flip_bits = self._draw_flip_bits()
        self._perm_cache: tuple[int, np.ndarray] | None = None
        self._lock = threading.Lock()
        # The loop now handing out batches (a token per loop) and its thread, if any.
        self._loop: object | None = None
        self._prefetcher: _Prefetcher | None = None

    def __len__(self) -> int:
        return self.iterations_per_epoch

    def _draw_flip_bits(self) -> np.ndarray | None:
        """Each training image's alternating-flip bit (only when the pipeline flips)."""
        if not self.augment.uses_flip_bits:
            return None
        return self._rng(_FLIP_BITS, 0, 0).random(len(self.X)) < 0.5

    def _rng(self, stream: int, epoch: int, index: int) -> np.random.Generator:
        return np.random.default_rng(
            np.random.SeedSequence(self.seed, spawn_key=(stream, epoch, index))
        )

    def permutation(self, epoch: int) -> np.ndarray:
        """The order of the training rows in ``epoch`` (a function of seed and epoch)."""
        epoch = check_count("BatchLoader.permutation", "epoch", epoch, 0)
        with self._lock:
            cached = self._perm_cache
            if cached is not None and cached[0] == epoch:
                return cached[1]
        N = len(self.X)
        perm = self._rng(_ORDER, epoch, 0).permutation(N) if self.shuffle else np.arange(N)
        perm.flags.writeable = False
        with self._lock:
            self._perm_cache = (epoch, perm)
        return perm

    def batch_indices(self, epoch: int, index: int) -> np.ndarray:
        """The training rows of batch ``index`` of ``epoch``."""
        index = check_count("BatchLoader.batch_indices", "index", index, 0)
        if index >= self.iterations_per_epoch:
            raise ValueError(
                f"BatchLoader.batch_indices: expected index < {self.iterations_per_epoch} "
                f"(batches per epoch), got {index}"
            )
        bs = self.batch_size
        return self.permutation(epoch)[index * bs : (index + 1) * bs]

    def get_batch(self, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Batch ``index`` of ``epoch``, augmented: equal arrays every time it is asked."""
        idx = self.batch_indices(epoch, index)
        xb, yb = self.X[idx], self.y[idx]
        if self.augment.spec:
            bits = None if self._flip_bits is None else self._flip_bits[idx]
            xb = self.augment(xb, self._rng(_AUGMENT, epoch, index), epoch, bits)
        return xb, yb

    def _keys(self, epoch: int, pos: int, num_batches: int) -> Iterator[tuple[int, int]]:
        for _ in range(num_batches):
            yield epoch, pos
            pos += 1
            if pos == self.iterations_per_epoch:
                epoch, pos = epoch + 1, 0

    def _advance(self) -> None:
        self.position += 1
        if self.position == self.iterations_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0

    def iterate(self, num_batches: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield the next ``num_batches`` batches (default: the rest of this epoch),
        continuing into the following epochs as needed."""
        if num_batches is None:
            num_batches = self.iterations_per_epoch - self.position
        num_batches = check_count("BatchLoader.iterate", "num_batches", num_batches, 0)
        return self._iterate(num_batches)

    def _iterate(self, num_batches: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if self._loop is not None:
            raise RuntimeError(
                "BatchLoader: already iterating; finish or close the other loop first"
            )
        if num_batches == 0:
            return
        self._loop = token = object()
        # The start is read here, in the consumer's thread; the keys run in the worker.
        keys = self._keys(self.epoch, self.position, num_batches)
        prefetcher = None
        if self.prefetch:
            self._prefetcher = prefetcher = _Prefetcher(
                lambda k: self.get_batch(*k), keys, self.prefetch
            )

        def next_batch() -> tuple[np.ndarray, np.ndarray]:
            return prefetcher.get() if prefetcher else self.get_batch(*next(keys))

        try:
            for _ in range(num_batches):
                if self._loop is not token:
                    raise RuntimeError(
                        "BatchLoader: the loader was closed while a loop was still using it"
                    )
                batch = next_batch()
                self._advance()
                yield batch
        finally:
            if prefetcher is not None:
                prefetcher.close()
            if self._loop is token:
                self._loop = self._prefetcher = None

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self.iterate()

    def close(self) -> None:
        """Stop the prefetch thread, if one is running. The loader stays usable."""
        if self._prefetcher is not None:
            self._prefetcher.close()
        self._loop = self._prefetcher = None

    def __enter__(self) -> BatchLoader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def state_dict(self) -> dict[str, Any]:
        """Where the loader is: ``{"seed", "epoch", "position"}`` (JSON-serialisable)."""
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state_dict`: the next batch is the one that would have
        come next then. The data, batch size and augmentation must be the same."""
        fn = "BatchLoader.load_state_dict"
        if not isinstance(state, Mapping) or set(state) != {"seed", "epoch", "position"}:
            raise ValueError(
                f"{fn}: expected a dict with keys ['epoch', 'position', 'seed'], got {state!r}"
            )
        if self._loop is not None:
            raise RuntimeError(f"{fn}: cannot move the loader while it is iterating")
        position = check_count(fn, "position", state["position"], 0)
        if position >= self.iterations_per_epoch:
            raise ValueError(
                f"{fn}: position {position} is past the {self.iterations_per_epoch} batches "
                "per epoch; expected the same data and batch size as the saved run"
            )
        if state["seed"] is None:
            raise ValueError(f"{fn}: expected the saved seed to be an int, got None")
        seed = _check_seed(fn, state["seed"])
        if seed != self.seed:
            self.seed = seed
            self._perm_cache = None
            self._flip_bits = self._draw_flip_bits()
        self.epoch = check_count(fn, "epoch", state["epoch"], 0)
        self.position = position
