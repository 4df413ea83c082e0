"""Each figure draws the data it is given."""

import numpy as np

from zoo import plots


def test_learning_curves_still_one_panel_per_metric():
    figure = plots.learning_curves(
        {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8]}
    )
    assert [axis.get_title() for axis in figure.axes] == ["loss", "accuracy"]
    np.testing.assert_array_equal(figure.axes[0].lines[1].get_ydata(), [1.1, 0.7])


def test_confusion_matrix_shows_the_counts():
    matrix = np.array([[5, 1], [0, 3]])
    figure = plots.confusion_matrix(matrix, ["cat", "dog"])
    np.testing.assert_array_equal(figure.axes[0].images[0].get_array(), matrix)
    assert sorted(t.get_text() for t in figure.axes[0].texts) == ["0", "1", "3", "5"]


def test_roc_plots_the_curve_and_auc():
    figure = plots.roc({"deepface": (np.array([0, 0.5, 1]), np.array([0, 1, 1]), 0.75)})
    line = figure.axes[0].lines[0]
    np.testing.assert_array_equal(line.get_xdata(), [0, 0.5, 1])
    assert "0.750" in line.get_label()


def test_shift_curves_one_line_per_model():
    figure = plots.shift_curves({"cnn": {0: 0.9, 1: 0.8}, "lcn": {0: 0.9, 1: 0.4}})
    assert [line.get_label() for line in figure.axes[0].lines] == ["cnn", "lcn"]
    np.testing.assert_array_equal(figure.axes[0].lines[1].get_ydata(), [0.9, 0.4])


def test_image_grid_and_filter_figure():
    grid = plots.image_grid(np.zeros((3, 8, 8, 1)), ["a", "b", "c"], columns=2)
    assert [axis.get_title() for axis in grid.axes][:3] == ["a", "b", "c"]
    kernels = np.random.default_rng(0).normal(size=(2, 3, 3))
    figure = plots.position_specific_filters(
        kernels, [(0, 0), (4, 4)], np.ones((5, 5)), np.ones((3, 3)), "title"
    )
    np.testing.assert_array_equal(figure.axes[1].images[0].get_array(), kernels[1])
    rows = [
        {
            "model": "cnn",
            "parameters": 10,
            "flops_per_example": 5,
            "train_step_ms": 1,
            "test_accuracy": 0.9,
            "shifted_accuracy": 0.5,
        }
    ]
    assert len(plots.comparison(rows).axes) == 5


def test_shift_curves_draw_the_spread_over_seeds_as_a_band():
    figure = plots.shift_curves({"cnn": {0: 0.9, 1: 0.8}}, spread={"cnn": {0: 0.01, 1: 0.05}})
    (band,) = figure.axes[0].collections
    ys = band.get_paths()[0].vertices[:, 1]
    np.testing.assert_allclose([ys.min(), ys.max()], [0.75, 0.91])
