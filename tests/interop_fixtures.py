"""Shared by the Keras and ONNX tests: the comparison of two frameworks' probabilities. (The
fixtures mnist_subset and trained_tutorial are in conftest.py.)"""

import numpy as np


def assert_same_predictions(ours, theirs, tolerance=1e-5):
    """Max |diff| of probabilities within tolerance; argmax equal wherever the top two are
    more than 2 * tolerance apart (a nearer tie may flip by float rounding). Returns the max
    |diff| and the number of equal argmaxes."""
    assert ours.shape == theirs.shape
    diff = float(np.abs(ours - theirs).max())
    assert diff <= tolerance, diff
    top2 = np.sort(ours, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * tolerance
    assert clear.mean() > 0.95
    np.testing.assert_array_equal(ours.argmax(1)[clear], theirs.argmax(1)[clear])
    return diff, int((ours.argmax(1) == theirs.argmax(1)).sum())
