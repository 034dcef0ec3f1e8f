"""Table IV: importance as a compression criterion (issue 12, item 5)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from anpyc_core.compress import _prune_lowest, compress
from anpyc_core.config import validate_config
from sweeper.cli import app

TINY = {
    "device": "cpu",
    "data": {
        "benchmark": "digits",
        "scenario": "permuted",
        "permute_first": False,
        "num_tasks": 2,
        "train_samples": 100,
        "test_samples": 100,
    },
    "model": {"arch": "lenet"},
    "strategy": {"method": "finetune", "importance_batch": 50},
    "optim": {"lr": 0.05, "momentum": 0.9, "batch_size": 64, "epochs": 1, "retrain_epochs": 1},
}
TABLE_IV = [800, 32, 51_200, 64, 1_605_632, 512, 131_072, 256]


def test_pruning_takes_the_lowest_fraction_of_what_remains_globally_and_never_regrows():
    omega = {"a": torch.tensor([[0.5, 0.1], [0.9, 0.0]]), "b": torch.tensor([0.3, 0.3, 0.2, 0.8])}
    pruned = {"a": torch.tensor([[False, False], [False, True]]), "b": torch.zeros(4, dtype=torch.bool)}
    _prune_lowest(omega, pruned, 0.5)  # 7 remain: the 3 lowest (0.1, 0.2, then the first 0.3) go
    assert pruned["a"].tolist() == [[False, True], [False, True]]
    assert pruned["b"].tolist() == [True, False, True, False]


@pytest.mark.parametrize("measure", ["anpyc", "magnitude"])
def test_compression_follows_the_schedule_and_pruned_values_stay_zero(measure, digits):
    cfg = validate_config(TINY)
    result = compress(cfg, measure)
    rows = result.rows
    assert list(rows[0].remaining.values()) == TABLE_IV and rows[0].total == 1_789_568
    expected = 1_789_568
    for row, fraction in zip(rows[1:], (0.8, 0.7, 0.5, 0.4, 0.1), strict=True):
        expected -= int(fraction * expected)
        assert row.total == expected
        assert row.compression == pytest.approx(1_789_568 / expected)
    assert rows[-1].total == 28_992 and 0 < rows[-1].test_acc <= 100


def test_pruned_weights_are_exactly_zero_after_retraining_with_momentum(digits, monkeypatch):
    import anpyc_core.compress as module

    seen = {}
    real_train = module.train

    def checking_train(model, split, cfg, epochs, pruned, gen):
        real_train(model, split, cfg, epochs, pruned, gen)
        for name, p in model.trunk_parameters().items():
            assert torch.equal(p.detach()[pruned[name]], torch.zeros(int(pruned[name].sum()))), name
        seen["pruned"] = sum(int(m.sum()) for m in pruned.values())

    monkeypatch.setattr(module, "train", checking_train)
    compress(validate_config(TINY), "magnitude", (0.5, 0.5))
    assert seen["pruned"] == 1_789_568 - 447_392


def test_the_cli_writes_the_table_json_and_figure_and_refuses_bad_input(tmp_path, digits):
    config = tmp_path / "lenet.yaml"
    config.write_text(json.dumps(TINY))
    out = tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "compress",
            str(config),
            "--importance",
            "magnitude",
            "--importance",
            "random",
            "--schedule",
            "0.5,0.5",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    saved = json.loads((out / "compression.json").read_text())["results"]
    assert [r["measure"] for r in saved] == ["magnitude", "random"]
    markdown = (out / "compression.md").read_text()
    assert "| conv1 W | 800 |" in markdown and "| **total** | 1,789,568 | 894,784 | 447,392 |" in markdown
    assert (out / "compression.png").stat().st_size > 10_000
    for args, needle in [
        (["--importance", "fisher"], "--importance: 'fisher' is not a measure"),
        (["--schedule", "0.5,1.5"], "--schedule: every fraction must lie in (0, 1)"),
        (["--schedule", "half"], "--schedule: 'half' is not a comma-separated list"),
    ]:
        bad = runner.invoke(app, ["compress", str(config), "--out", str(tmp_path / "never"), *args])
        assert bad.exit_code == 2 and needle in bad.output and not (tmp_path / "never").exists()
