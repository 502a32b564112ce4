"""Tests for nndl.plots: data in the figures, filter normalisation, atomic PNG files."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from nndl import plots  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path, min_bytes=2000) -> bool:
    data = path.read_bytes()
    return data[:8] == PNG_MAGIC and len(data) >= min_bytes


def test_plot_functions_never_touch_pyplot_state():
    import matplotlib

    backend = matplotlib.get_backend()
    plots.plot_accuracy([1, 2], [0.1, 0.2], [0.1, 0.15])
    assert matplotlib.get_backend() == backend
    pyplot = __import__("sys").modules.get("matplotlib.pyplot")
    if pyplot is not None:  # another test may have imported it; we must not add figures
        assert pyplot.get_fignums() == []


def test_accuracy_lines_hold_the_data_given():
    epochs, train, val = [1, 2, 3], [0.3, 0.5, 0.7], [0.25, 0.45, 0.4]
    fig = plots.plot_accuracy(epochs, train, val)
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    np.testing.assert_allclose(lines["train"].get_xdata(), epochs)
    np.testing.assert_allclose(lines["train"].get_ydata(), train)
    np.testing.assert_allclose(lines["val"].get_ydata(), val)


def test_loss_plot_has_raw_and_smoothed_curve():
    rng = np.random.default_rng(0)
    loss = 2.3 - np.linspace(0, 1, 200) + 0.1 * rng.standard_normal(200)
    fig = plots.plot_loss(loss, iterations_per_epoch=50, smooth=10)
    raw, smooth = fig.axes[0].get_lines()[:2]
    np.testing.assert_allclose(raw.get_ydata(), loss)
    np.testing.assert_allclose(smooth.get_ydata(), plots.moving_average(loss, 10))
    # smoothing reduces the iteration-to-iteration noise
    assert np.std(np.diff(smooth.get_ydata())) < np.std(np.diff(loss))


def test_moving_average_matches_a_direct_trailing_mean():
    a = np.array([1.0, 3.0, 2.0, 8.0, 4.0])
    expected = [np.mean(a[max(0, i - 2) : i + 1]) for i in range(len(a))]
    np.testing.assert_allclose(plots.moving_average(a, 3), expected)
    with pytest.raises(ValueError, match="moving_average"):
        plots.moving_average(a, 0)


def test_mismatched_lengths_are_a_clear_error():
    with pytest.raises(ValueError, match="plot_accuracy.*same length"):
        plots.plot_accuracy([1, 2], [0.1], [0.1, 0.2])
    with pytest.raises(ValueError, match="plot_val_acc_vs_time"):
        plots.plot_val_acc_vs_time([1.0, 2.0, 3.0], [0.1, 0.2])


def test_filter_grid_normalises_each_filter_and_keeps_padding_white():
    rng = np.random.default_rng(1)
    # filters of very different scales must all span [0, 1] in the grid
    w = rng.standard_normal((5, 3, 4, 4)) * np.array([1e-3, 1, 10, 100, 1e4])[:, None, None, None]
    grid = plots.filter_grid(w, padding=1)
    cols = 3  # ceil(sqrt(5))
    assert grid.shape == (2 * 5 - 1, cols * 5 - 1, 3)
    for i in range(5):
        r, c = divmod(i, cols)
        tile = grid[r * 5 : r * 5 + 4, c * 5 : c * 5 + 4]
        assert tile.min() == pytest.approx(0.0) and tile.max() == pytest.approx(1.0)
        # the tile is an affine image of the filter (channels last)
        src = w[i].transpose(1, 2, 0)
        np.testing.assert_allclose(tile, (src - src.min()) / (src.max() - src.min()))
    assert np.all(grid[4, :, :] == 1.0) and np.all(grid[:, 4, :] == 1.0)
    assert np.all(grid[5:9, 10:14] == 1.0)  # the unused sixth slot stays blank


def test_filter_grid_grey_and_constant_filters():
    w = np.zeros((2, 1, 3, 3))
    w[1, 0] = np.arange(9).reshape(3, 3)
    grid = plots.filter_grid(w, padding=0)
    assert grid.shape == (3, 6)
    np.testing.assert_allclose(grid[:, :3], 0.5)  # constant filter: mid grey, no NaN
    np.testing.assert_allclose(grid[:, 3:], np.arange(9).reshape(3, 3) / 8)
    with pytest.raises(ValueError, match="filter_grid.*\\(F, C, HH, WW\\)"):
        plots.filter_grid(np.zeros((3, 3, 3)))


def test_confusion_matrix_counts():
    y_true = np.array([0, 0, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 2, 0, 2])
    cm = plots.confusion_matrix(y_true, y_pred, 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    np.testing.assert_array_equal(cm.sum(axis=1), np.bincount(y_true, minlength=3))
    with pytest.raises(ValueError, match="confusion_matrix"):
        plots.confusion_matrix(y_true, y_pred, 2)


def test_confusion_matrix_plot_shows_row_fractions():
    cm = np.array([[3, 1], [0, 4]])
    fig = plots.plot_confusion_matrix(cm, ["cat", "dog"])
    image = fig.axes[0].get_images()[0].get_array()
    np.testing.assert_allclose(image, [[0.75, 0.25], [0.0, 1.0]])
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["cat", "dog"]
    with pytest.raises(ValueError, match="class names"):
        plots.plot_confusion_matrix(cm, ["a", "b", "c"])


def test_saving_writes_a_png_atomically(tmp_path):
    paths = [tmp_path / n for n in ("loss.png", "acc.png", "time.png", "filters.png", "cm.png")]
    plots.plot_loss(np.linspace(2, 1, 30), path=paths[0])
    plots.plot_accuracy([1, 2], [0.3, 0.4], [0.2, 0.3], path=paths[1])
    plots.plot_val_acc_vs_time([1.5, 3.0], [0.2, 0.3], path=paths[2])
    plots.plot_filters(np.random.default_rng(0).standard_normal((8, 3, 3, 3)), path=paths[3])
    plots.plot_confusion_matrix(np.eye(3, dtype=int) * 5, path=paths[4])
    for p in paths:
        assert _is_png(p), p
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted(p.name for p in paths)


def test_failed_save_leaves_no_temp_file(tmp_path):
    fig = plots.plot_accuracy([1], [0.1], [0.1])
    with pytest.raises(ValueError):  # an invalid dpi makes savefig fail half way
        plots.save_figure(fig, tmp_path / "a.png", dpi=-1)
    assert list(tmp_path.iterdir()) == []
