"""Tests for nndl.train.loader.BatchLoader: epochs, determinism, exact resume, thread hygiene."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from nndl.augment import flip_horizontal
from nndl.train.loader import BatchLoader

SPEC = [
    {"name": "random_crop", "pad": 1},
    {"name": "alternating_flip"},
    {"name": "cutout", "size": 2},
]


def _data(n=23, h=5, w=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3, h, w)).astype(np.float32)
    y = np.arange(n, dtype=np.int64)  # labels name the rows, to check they follow them
    return X, y


def _loader_threads():
    return [t for t in threading.enumerate() if t.name == "nndl-BatchLoader"]


def _collect(loader, num_batches=None):
    return [(xb.copy(), yb.copy()) for xb, yb in loader.iterate(num_batches)]


def _same(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xb)


def test_an_epoch_visits_a_permutation_and_drops_the_remainder():
    X, y = _data(23)
    with BatchLoader(X, y, 5, seed=1) as loader:
        assert len(loader) == loader.iterations_per_epoch == 4  # 23 // 5
        batches = _collect(loader)
        assert loader.state_dict() == {"seed": 1, "epoch": 1, "position": 0}
    labels = np.concatenate([yb for _, yb in batches])
    assert len(labels) == 20 and len(set(labels.tolist())) == 20
    np.testing.assert_array_equal(labels, loader.permutation(0)[:20])
    for xb, yb in batches:
        assert xb.shape == (5, 3, 5, 5) and xb.dtype == np.float32 and yb.dtype == np.int64
        np.testing.assert_array_equal(xb, X[yb])  # no augmentation: rows as they are


def test_epochs_differ_and_shuffle_false_keeps_the_order():
    X, y = _data(12)
    loader = BatchLoader(X, y, 4, seed=2, prefetch=0)
    assert not np.array_equal(loader.permutation(0), loader.permutation(1))
    plain = BatchLoader(X, y, 4, shuffle=False)
    labels = np.concatenate([yb for _, yb in _collect(plain, 6)])
    np.testing.assert_array_equal(labels, np.concatenate([np.arange(12), np.arange(12)]))


def test_a_batch_larger_than_the_data_is_all_of_it():
    X, y = _data(3)
    loader = BatchLoader(X, y, 10)
    ((xb, yb),) = _collect(loader)
    assert sorted(yb.tolist()) == [0, 1, 2]


def test_labels_follow_their_augmented_images():
    X, y = _data(16, h=6, w=6)
    loader = BatchLoader(X, y, 4, augment=[{"name": "random_crop", "pad": 0}, "random_flip"])
    for xb, yb in _collect(loader, 8):
        for img, label in zip(xb, yb, strict=True):
            assert np.array_equal(img, X[label]) or np.array_equal(img, X[label, :, :, ::-1])


def test_batches_are_a_pure_function_of_seed_epoch_and_index():
    X, y = _data()
    a = BatchLoader(X, y, 4, augment=SPEC, seed=3)
    b = BatchLoader(X, y, 4, augment=SPEC, seed=3, prefetch=0)
    _same(_collect(a, 12), _collect(b, 12))  # with and without the thread
    # ... and batch (1, 2) asked directly, any number of times, is the 8th yielded.
    yielded = _collect(BatchLoader(X, y, 4, augment=SPEC, seed=3), 12)
    for _ in range(2):
        _same([a.get_batch(1, 2)], [yielded[5 + 2]])
    c = BatchLoader(X, y, 4, augment=SPEC, seed=4)
    assert not np.array_equal(_collect(c, 1)[0][0], yielded[0][0])


def test_resume_from_state_dict_gives_identical_batches():
    X, y = _data()
    whole = _collect(BatchLoader(X, y, 4, augment=SPEC, seed=5), 17)  # 5 per epoch
    first = BatchLoader(X, y, 4, augment=SPEC, seed=5)
    part = []
    for i, batch in enumerate(first.iterate(17)):
        part.append((batch[0].copy(), batch[1].copy()))
        if i == 7:  # stop in the middle of epoch 1, as an interrupted run does
            break
    state = first.state_dict()
    assert state == {"seed": 5, "epoch": 1, "position": 3}
    resumed = BatchLoader(X, y, 4, augment=SPEC, seed=999)
    resumed.load_state_dict(state)
    part += _collect(resumed, 17 - 8)
    _same(part, whole)


def test_alternating_flip_shows_every_image_both_ways_over_two_epochs():
    X, y = _data(12, h=4, w=4)
    loader = BatchLoader(X, y, 4, augment=["alternating_flip"], seed=6)
    seen = {}
    for _ in range(3):
        for xb, yb in _collect(loader):
            for img, label in zip(xb, yb, strict=True):
                flipped = np.array_equal(img, flip_horizontal(X[label : label + 1])[0])
                assert flipped or np.array_equal(img, X[label])
                seen.setdefault(int(label), []).append(flipped)
    assert all(f[0] != f[1] and f[2] == f[0] for f in seen.values())
    first_epoch = [f[0] for f in seen.values()]
    assert 0 < sum(first_epoch) < len(first_epoch)  # a random half-ish in epoch 0


def test_the_thread_prefetches_and_stops_at_the_end_of_the_loop():
    X, y = _data(40)
    produced = []
    loader = BatchLoader(X, y, 4, prefetch=2)
    original = loader.get_batch

    def spy(epoch, index):
        produced.append((epoch, index))
        return original(epoch, index)

    loader.get_batch = spy
    it = loader.iterate(10)
    next(it)
    deadline = time.monotonic() + 5
    while len(produced) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert len(produced) == 3  # the one handed out and two ahead, no more
    assert len(_loader_threads()) == 1
    for _ in it:
        pass
    assert not _loader_threads()


def test_breaking_out_stops_the_thread_and_keeps_the_position():
    X, y = _data(40)
    loader = BatchLoader(X, y, 4, prefetch=3)
    for i, _ in enumerate(loader):
        if i == 2:
            break
    assert not _loader_threads()
    assert loader.state_dict()["position"] == 3


def test_an_exception_in_the_loop_body_stops_the_thread():
    X, y = _data(40)
    loader = BatchLoader(X, y, 4)
    for exc in (KeyboardInterrupt, ValueError):
        with pytest.raises(exc):
            for _ in loader.iterate(10):
                raise exc("stop")
        assert not _loader_threads()
    assert loader.state_dict()["position"] == 2


def test_an_error_while_preparing_a_batch_reaches_the_consumer():
    X, y = _data(12, h=3, w=3)
    loader = BatchLoader(X, y, 4, augment=[{"name": "random_crop", "pad": 3}])
    with pytest.raises(ValueError, match="random_crop: reflect padding needs pad < the image"):
        for _ in loader:
            pass
    assert not _loader_threads()
    assert loader.state_dict()["position"] == 0


def test_close_stops_an_abandoned_iterator():
    X, y = _data(40)
    with BatchLoader(X, y, 4, prefetch=1) as loader:
        it = iter(loader)
        next(it)
        with pytest.raises(RuntimeError, match="BatchLoader: already iterating"):
            next(loader.iterate())
    assert not _loader_threads()
    del it


def test_bad_arguments_and_states():
    X, y = _data(8)
    with pytest.raises(ValueError, match=r"BatchLoader: expected y of shape \(8,\)"):
        BatchLoader(X, y[:5], 2)
    with pytest.raises(ValueError, match="BatchLoader: expected batch_size >= 1"):
        BatchLoader(X, y, 0)
    with pytest.raises(ValueError, match="BatchLoader: expected seed to be an int >= 0"):
        BatchLoader(X, y, 2, seed=-1)
    with pytest.raises(TypeError, match=r"BatchLoader: expected X to be an array"):
        BatchLoader(list(X), y, 2)
    loader = BatchLoader(X, y, 2)
    with pytest.raises(ValueError, match=r"load_state_dict: expected a dict with keys"):
        loader.load_state_dict({"epoch": 1})
    with pytest.raises(ValueError, match=r"load_state_dict: position 4 is past the 4 batches"):
        loader.load_state_dict({"seed": 0, "epoch": 0, "position": 4})
    with pytest.raises(ValueError, match=r"batch_indices: expected index < 4"):
        loader.get_batch(0, 4)


def test_seed_none_draws_fresh_entropy_and_records_it():
    X, y = _data(8)
    a = BatchLoader(X, y, 2, seed=None)
    b = BatchLoader(X, y, 2, seed=None)
    assert a.seed != b.seed
    c = BatchLoader(X, y, 2, seed=0)
    c.load_state_dict(a.state_dict())
    _same(_collect(a, 3), _collect(c, 3))


def test_a_loop_continued_after_close_fails_instead_of_hanging():
    X, y = _data(40)
    loader = BatchLoader(X, y, 4, prefetch=1)
    it = loader.iterate(10)
    next(it)
    loader.close()
    # A new loop may start at once; the old one's clean-up must not disturb it.
    fresh = loader.iterate(1)
    with pytest.raises(RuntimeError, match="BatchLoader: the loader was closed while a loop"):
        for _ in range(3):  # the queue may still hold a batch prepared before close()
            next(it)
    assert len(list(fresh)) == 1
    assert not _loader_threads()


def test_flat_examples_load_without_augmentation():
    X = np.arange(20.0).reshape(10, 2)
    y = np.arange(10)
    loader = BatchLoader(X, y, 3, prefetch=0)
    for xb, yb in _collect(loader, 4):
        np.testing.assert_array_equal(xb, X[yb])
    with pytest.raises(ValueError, match=r"BatchLoader: expected X with 4 dimensions"):
        BatchLoader(X, y, 3, augment=["random_flip"])


@pytest.mark.parametrize("prefetch", [0, 2])
def test_two_loops_at_once_are_refused(prefetch):
    X, y = _data(20)
    loader = BatchLoader(X, y, 4, prefetch=prefetch)
    it = loader.iterate()
    next(it)
    with pytest.raises(RuntimeError, match="BatchLoader: already iterating"):
        next(loader.iterate())
    with pytest.raises(RuntimeError, match="load_state_dict: cannot move the loader"):
        loader.load_state_dict({"seed": 0, "epoch": 0, "position": 0})
    assert len(list(it)) == 4  # the first loop is unharmed and finishes its epoch
    assert loader.state_dict()["epoch"] == 1
    assert len(list(loader)) == 5  # and then the next one may start
