"""SPEC §6 metrics against matrices computed by hand."""

import pytest

from anpyc_core import metrics

# 3 tasks. Row 0 untrained, row j after task j.
P = [
    [10.0, 20.0, 30.0],
    [90.0, 40.0, 35.0],
    [80.0, 95.0, 50.0],
    [70.0, 85.0, 99.0],
]
JOINT = [92.0, 96.0, 98.0]


def test_acc_is_mean_of_last_row():
    assert metrics.acc(P) == pytest.approx((70 + 85 + 99) / 3)


def test_bwt_compares_final_to_just_learned():
    # i=1: 70-90 = -20; i=2: 85-95 = -10 -> mean -15
    assert metrics.bwt(P) == pytest.approx(-15.0)


def test_fwt_uses_joint_reference_and_is_null_without_one():
    # i=2: 95-96 = -1; i=3: 99-98 = 1 -> 0
    assert metrics.fwt(P, JOINT) == pytest.approx(0.0)
    assert metrics.fwt(P, None) is None
    assert metrics.summarize(P)["fwt"] is None


def test_fwt_init_compares_before_learning_to_untrained():
    # i=2: P[1][2]-P[0][2] = 40-20 = 20; i=3: P[2][3]-P[0][3] = 50-30 = 20
    assert metrics.fwt_init(P) == pytest.approx(20.0)


def test_forgetting_uses_best_earlier_accuracy():
    # i=1: max(90, 80) - 70 = 20; i=2: max(95) - 85 = 10 -> 15
    assert metrics.forgetting(P) == pytest.approx(15.0)


def test_forgetting_differs_from_bwt_when_accuracy_peaks_later():
    Q = [[0, 0], [50, 0], [60, 90]]
    # BWT: 60-50 = 10; forgetting: max(50) - 60 = -10
    assert metrics.bwt(Q) == pytest.approx(10.0)
    assert metrics.forgetting(Q) == pytest.approx(-10.0)


def test_learning_accuracy_is_mean_diagonal():
    assert metrics.learning_accuracy(P) == pytest.approx((90 + 95 + 99) / 3)


def test_malformed_matrix_is_rejected():
    with pytest.raises(ValueError, match=r"\(T\+1\) x T"):
        metrics.acc([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(ValueError, match="joint reference has 2 tasks"):
        metrics.fwt(P, [1.0, 2.0])
