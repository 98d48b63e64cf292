"""Scores from confusion matrices: macro-F1 by hand, the floor, ignored labels."""

from __future__ import annotations

import numpy as np
import pytest

from hftbot.model.metrics import confusion, score_predictions, scores


def test_macro_f1_by_hand():
    y = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2, -1])
    p = np.array([0, 1, 1, 1, 2, 2, 2, 0, 2, 0])
    cm = confusion(y, p)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 1], [1, 0, 3]]
    s = scores(cm)
    f_down = 2 * 0.5 * 0.5 / 1.0
    f_flat = 2 * (2 / 3) * (2 / 3) / (4 / 3)
    f_up = 2 * 0.75 * 0.75 / 1.5
    assert s["macro_f1"] == pytest.approx((f_down + f_flat + f_up) / 3)
    assert s["accuracy"] == pytest.approx(6 / 9)
    assert s["majority_floor"] == pytest.approx(4 / 9)
    assert s["n"] == 9 and s["support_up"] == 4
    assert s["precision_up"] == pytest.approx(0.75) and s["recall_flat"] == pytest.approx(2 / 3)


def test_always_one_class_scores_the_floor_and_a_low_macro_f1():
    y = np.array([1] * 8 + [0, 2])
    s = score_predictions(y, np.ones_like(y))
    assert s["accuracy"] == s["majority_floor"] == pytest.approx(0.8)
    assert s["macro_f1"] == pytest.approx((2 * 0.8 / 1.8) / 3)


def test_bad_classes_are_refused():
    with pytest.raises(ValueError, match="class"):
        confusion(np.array([0, 1]), np.array([0, 3]))
    with pytest.raises(ValueError, match="predictions"):
        confusion(np.array([0, 1]), np.array([0]))
