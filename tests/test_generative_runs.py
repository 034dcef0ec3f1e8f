"""Generative runs end to end on tiny digits (issue 13): C-GAN and VAE trainers, DGR, pruning, checkpoints."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from anpyc_core.config import ConfigError, apply_overrides, validate_config
from anpyc_core.data import load_raw
from anpyc_core.generative.feature_classifier import feature_record
from anpyc_core.generative.trainer import GenerativeTrainer, replay_count
from sweeper.cli import app

TINY_GAN = {
    "seed": 1,
    "device": "cpu",
    "data": {"benchmark": "digits", "classes_per_task": 1, "num_tasks": 3},
    "model": {"arch": "cgan"},
    "strategy": {"method": "anpyc", "lam": 1.0, "beta": 30, "importance_batch": 20, "importance_samples": 60},
    "optim": {"optimizer": "adam", "lr": 0.001, "batch_size": 32, "epochs": 2, "retrain_epochs": 1},
    "generative": {"noise_dim": 8, "embed_dim": 4, "hidden": [16, 32], "eval_samples": 40, "feature_epochs": 1},
}


def gan_cfg(**overrides):
    """A validated tiny C-GAN config with dotted-key overrides."""
    return validate_config(apply_overrides(TINY_GAN, overrides))


@pytest.fixture(scope="module")
def features(tmp_path_factory, digits):
    """The digits feature classifier, trained once for the module."""
    cfg = gan_cfg(**{"generative.feature_cache": str(tmp_path_factory.mktemp("features"))})
    return feature_record(cfg.generative, digits)


def test_the_trainer_grows_one_class_row_per_task_and_never_moves_old_rows(features):
    trainer = GenerativeTrainer(gan_cfg(), features=features)
    finished = []
    for record in trainer.run():
        assert len(trainer.model.heads) == record.task
        for old, row in enumerate(finished):
            assert torch.equal(trainer.model.heads[old].detach(), row)  # earlier rows never change
        finished.append(trainer.model.heads[record.task - 1].detach().clone())
        assert math.isnan(record.acc_row[-1]) == (record.task < 3)  # unmet tasks have no row: NaN
        assert all(f >= 0 for f in record.extra_rows["fid"][: record.task])


def test_freed_generator_weights_are_exactly_zero_and_have_zero_importance(features):
    trainer = GenerativeTrainer(gan_cfg(), features=features)
    next(trainer.run())  # task 1: training, pruning rounds with retraining, Ω of the task
    strategy = trainer.strategy
    assert bool(strategy.has_free) and strategy.free_count() > 0
    for name, p in strategy.params.items():
        free = strategy.free[name]
        assert torch.all(p.detach()[free] == 0), name  # exactly 0 through Adam retraining
        assert torch.all(strategy.omega[name] >= 0), name
        assert torch.all(strategy.omega[name][p.detach() == 0] == 0), name  # Ω = 0 where θ = 0
    assert trainer.critic is not None and not any(n.startswith("critic") for n in strategy.params)


@pytest.mark.parametrize("share", [0.5, 0.25])
def test_dgr_batches_hold_the_configured_share_of_replayed_old_task_images(features, share):
    trainer = GenerativeTrainer(
        gan_cfg(**{"strategy.method": "dgr", "generative.replay_share": share}), features=features
    )
    trainer.run_task(0)
    trainer.run_task(1)
    trainer._replay = copy.deepcopy(trainer.model).eval().requires_grad_(False)
    x = trainer.tasks.tasks[2].train.inputs()[:48]
    mixed, ids = trainer.mixed_batch(x, torch.full((48,), 2), 2)
    old = int((ids < 2).sum())
    assert old == replay_count(48, share) and abs(old / len(ids) - share) <= 1 / len(ids)
    assert torch.equal(mixed[:48], x) and set(ids[48:].tolist()) <= {0, 1}
    assert float(mixed[48:].min()) >= 0 and float(mixed[48:].max()) <= 1


def test_a_run_resumed_from_a_task_boundary_checkpoint_is_bit_identical(features, tmp_path):
    straight = GenerativeTrainer(gan_cfg(), features=features)
    for _ in straight.run():
        pass
    first = GenerativeTrainer(gan_cfg(), features=features)
    next(first.run())
    first.save_checkpoint(tmp_path / "ckpt.pt")
    resumed = GenerativeTrainer(gan_cfg(), features=features)
    resumed.load_checkpoint(tmp_path / "ckpt.pt")
    for _ in resumed.run():
        pass
    a, b = straight.result(), resumed.result()
    np.testing.assert_array_equal(a.acc_matrix, b.acc_matrix)  # NaN (unmet tasks) equal to NaN
    np.testing.assert_array_equal(a.extra_matrices["fid"], b.extra_matrices["fid"])
    mine, theirs = straight.strategy.state_dict(), resumed.strategy.state_dict()
    assert list(mine) == list(theirs)
    for name, value in mine.items():
        assert torch.equal(value, theirs[name]), name


def test_vae_runs_report_task_one_elbo_and_joint_trains_every_task_at_once(features):
    vae = validate_config(
        apply_overrides(
            TINY_GAN,
            {"model.arch": "vae", "data.classes_per_task": 5, "data.num_tasks": None, "data.train_samples": 200},
        )
    )
    trainer = GenerativeTrainer(vae, features=features)
    records = list(trainer.run())
    assert [r.task for r in records] == [1, 2] and len(records[-1].extra_rows["elbo"]) == 2
    result = trainer.result()
    assert result.metrics["elbo_task1"] < 0 and math.isfinite(result.metrics["fid_first5"])
    assert result.fingerprint["features"].startswith("anpyc feature classifier of digits")
    joint = GenerativeTrainer(gan_cfg(**{"strategy.method": "joint"}), features=features)
    assert [r.task for r in joint.run()] == [3] and len(joint.acc_matrix) == 4


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"strategy.method": "hat"}, "strategy.method: model.arch cgan takes"),
        ({"strategy.importance": "si"}, "strategy.importance: a generator takes"),
        ({"data.scenario": "permuted"}, "data.scenario: model.arch cgan learns split tasks"),
        ({"model.arch": "mlp"}, "data.classes_per_task: a classifier's task needs at least 2"),
        ({"model.arch": "mlp", "data.classes_per_task": 2, "strategy.method": "dgr"}, "dgr replays a generator"),
    ],
)
def test_configs_a_generative_run_cannot_take_are_refused_in_one_line(overrides, needle):
    with pytest.raises(ConfigError, match=needle):
        gan_cfg(**overrides)


def test_missing_or_corrupt_feature_files_fail_in_one_line_and_write_nothing(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a torch file")
    for path, needle in ((tmp_path / "missing.pt", "no such feature classifier file"), (corrupt, "not a feature")):
        out = tmp_path / f"out_{path.stem}"
        args = ["train", "--out", str(out), "--set", "model.arch=cgan", "--set", "data.classes_per_task=1"]
        result = CliRunner().invoke(app, [*args, "--set", f"generative.features={path}"])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1 and needle in lines[0], result.output
        assert not out.exists()


def test_train_writes_a_sample_grid_and_the_fid_table(tmp_path, features, monkeypatch):
    monkeypatch.setenv("ANPYC_CACHE", str(tmp_path / "cache"))
    config = tmp_path / "gan.yaml"
    import yaml

    config.write_text(yaml.safe_dump(apply_overrides(TINY_GAN, {"strategy.method": "sgd", "strategy.lam": 1.0})))
    result = CliRunner().invoke(app, ["train", str(config), "--out", str(tmp_path / "out"), "-q"])
    assert result.exit_code == 0, result.output
    assert "FID " in result.output and "FID features: anpyc feature classifier of digits" in result.output
    from PIL import Image

    grid = Image.open(tmp_path / "out" / "samples.png")
    assert grid.size[1] == 3 * (8 + 2) + 2  # one row of 8x8 samples per task, 2-pixel padding


@pytest.mark.e2e  # a further real Ray study: the end-to-end lane
def test_a_generative_study_records_fid_per_task_sample_grids_and_final_fid(ray_session, tmp_path, monkeypatch):
    import mlflow

    from sweeper.running.launch import launch, spec_text
    from sweeper.storage import results
    from sweeper.study.spec import parse_study
    from sweeper.tracking.recorder import TAG_ROLE

    monkeypatch.setenv("ANPYC_CACHE", str(tmp_path / "cache"))  # the driver trains the feature classifier once
    base = apply_overrides(TINY_GAN, {"data.num_tasks": 2, "optim.epochs": 1})
    spec = parse_study(
        {
            "name": "tiny_cgan",
            "base": base,
            "ablations": {"anpyc": {}, "dgr": {"strategy.method": "dgr"}},
            "seeds": [0],
            "objectives": [{"metric": "val_fid_first5", "mode": "min"}],
            "storage": str(tmp_path / "studies"),
            "max_concurrent_trials": 2,
        }
    )
    launch(spec, spec_text(spec))
    store = spec.store
    trials, tasks = results.read_trials(store), results.read_tasks(store)
    assert len(trials) == 2 and set(trials["status"]) == {"FINISHED"}
    assert (trials["test_fid_first5"] > 0).all() and (trials["val_fid_first5"] > 0).all()
    assert trials["fid_features"].str.startswith("anpyc feature classifier of digits").all()
    learned = tasks[(tasks["split"] == "test") & (tasks["eval_task"] <= tasks["after_task"])]
    assert len(learned) == 2 * 3 and (learned["fid"] > 0).all()  # after task 1: one task, after task 2: two
    client = mlflow.tracking.MlflowClient(spec.resolved_tracking_uri())
    exp = client.get_experiment_by_name(spec.name)
    for run in client.search_runs([exp.experiment_id], f"tags.{TAG_ROLE} = 'trial'"):
        names = {a.path for a in client.list_artifacts(run.info.run_id, "snapshots")}
        assert names == {"snapshots/samples_task_001.png", "snapshots/samples_task_002.png"}
        assert {"fid_matrix.json", "acc_matrix.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
        assert run.data.tags["fid_features"] == trials["fid_features"].iloc[0]


def test_the_dcgan_version_generates_32x32_colour_images_and_keeps_old_rows(tmp_path):
    from anpyc_core.data import build_tasks
    from anpyc_core.data.sources import RawDataset
    from anpyc_core.generative.feature_classifier import train_feature_net

    rng = np.random.default_rng(0)
    x = rng.random((120, 3 * 32 * 32), dtype=np.float32)
    y = np.repeat(np.arange(10), 12)
    raw = RawDataset("svhn", x, y, x[:60], y[:60], origin="test", shape=(3, 32, 32))
    cfg = validate_config(
        apply_overrides(
            TINY_GAN, {"data.benchmark": "svhn", "data.num_tasks": 2, "optim.epochs": 1, "strategy.beta": 10}
        )
    )
    assert cfg.conv_gan
    trainer = GenerativeTrainer(cfg, tasks=build_tasks(cfg.data, raw, cfg.seed), features=train_feature_net(raw, 1))
    rows = []
    for record in trainer.run():
        rows.append(trainer.model.heads[record.task - 1].detach().clone())
        assert all(torch.equal(trainer.model.heads[i].detach(), row) for i, row in enumerate(rows))
    assert trainer.sample_grid(4).shape == (3, 2 * 34 + 2, 4 * 34 + 2)
    assert all(math.isfinite(v) for v in trainer.result().extra_matrices["fid"][-1])  # 12 test images a task
    with pytest.raises(ConfigError, match="generative.net: conv generates 32x32 images"):
        gan_cfg(**{"generative.net": "conv"})


def test_inception_weights_from_a_local_file_give_2048_d_features_and_foreign_files_one_line(tmp_path):
    from torchvision.models import inception_v3

    from anpyc_core.generative.feature_classifier import FeatureError, feature_net, features_name

    weights = tmp_path / "inception.pt"
    torch.manual_seed(0)
    torch.save(inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict(), weights)
    cfg = gan_cfg(**{"generative.features": f"inception:{weights}"})
    record = feature_record(cfg.generative, load_raw("digits"))
    net = feature_net(record, torch.device("cpu"))
    with torch.no_grad():
        feats = net.features(torch.rand(2, 64))
    assert feats.shape == (2, 2048) and features_name(record).startswith("inception-v3 pool (2048-d)")
    foreign = tmp_path / "foreign.pt"
    torch.save({"conv.weight": torch.zeros(3)}, foreign)
    with pytest.raises(FeatureError, match="not torchvision Inception-v3 weights"):
        feature_net({"inception": str(foreign), "image": [1, 8, 8]}, torch.device("cpu"))
