"""`rerun` says "identical" only when it is (issue 22, item 1)."""

from sweeper.reading.query import rerun_verdict


def test_identical_only_when_every_shared_metric_is_equal_to_the_last_bit():
    same = {"val_acc": 91.25, "test_bwt": float("nan")}
    assert rerun_verdict(same, dict(same)) == "identical"
    assert rerun_verdict({"val_acc": 91.25, "only_recorded": 1.0}, {"val_acc": 91.25}) == "identical"


def test_rounding_differences_are_named_with_their_size():
    verdict = rerun_verdict({"val_acc": 91.25, "test_bwt": -3.0}, {"val_acc": 91.25, "test_bwt": -3.0 * (1 + 4e-7)})
    assert verdict == "equal to rounding (max rel 4.0e-07)"


def test_a_real_difference_is_different():
    assert rerun_verdict({"val_acc": 91.25}, {"val_acc": 91.40}).startswith("DIFFERENT (max rel 1.6e-03")
    assert rerun_verdict({"val_acc": 91.25}, {"val_acc": float("nan")}).startswith("DIFFERENT (max rel inf")
