"""`--version`, `launch --dry-run`, `launch --set` and `list` (issue 14, item 6)."""

from __future__ import annotations

import re

import yaml
from typer.testing import CliRunner

from sweeper.cli import _study, app
from sweeper.storage import results
from sweeper.study.spec import parse_study
from tests.conftest import TINY


def write_study(tmp_path, name="dry", **extra):
    raw = {
        "name": name,
        "base": TINY,
        "search": {"strategy.lam": {"grid": [0.5, 2.0, 8.0]}},
        "ablations": {"full": {}, "no_pruning": {"strategy.pruning": "none"}},
        "seeds": [0, 1],
        "storage": str(tmp_path / "out"),
        **extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, raw


def test_version_prints_the_package_version_and_commit():
    proc = CliRunner().invoke(app, ["--version"])
    assert proc.exit_code == 0 and re.fullmatch(r"anpyc-sweep \d+\.\d+\.\d+ \(.+\)\n", proc.output)


def test_dry_run_lists_every_trial_and_runs_nothing(tmp_path):
    path, _ = write_study(tmp_path)
    proc = CliRunner().invoke(app, ["launch", str(path), "--dry-run"])
    assert proc.exit_code == 0, proc.output
    lines = proc.output.strip().splitlines()
    assert lines[-1] == "dry: 12 trials; nothing was run (--dry-run)"
    assert len([ln for ln in lines if "ablation=" in ln]) == 12
    assert "ablation=no_pruning seed=1 strategy.lam=8.0" in proc.output
    assert not (tmp_path / "out").exists()


def test_dry_run_of_a_packed_study_shows_its_packs(tmp_path):
    path, _ = write_study(tmp_path, pack={"max_members": 4})
    proc = CliRunner().invoke(app, ["launch", str(path), "--dry-run"])
    assert proc.exit_code == 0, proc.output
    assert proc.output.count("(4 members)") == 2 and proc.output.count("(2 members)") == 2
    assert proc.output.strip().endswith("dry: 12 trials in 4 packs; nothing was run (--dry-run)")


def test_launch_set_overrides_the_base_config_before_validation(tmp_path):
    path, _ = write_study(tmp_path)
    spec = _study(path, base_overrides=["optim.epochs=7", "model.hidden=[8]"])
    assert spec.base["optim"]["epochs"] == 7 and spec.base["model"]["hidden"] == [8]
    assert spec.base["optim"]["lr"] == TINY["optim"]["lr"]  # the rest of the section is kept
    proc = CliRunner().invoke(app, ["launch", str(path), "--set", "optim.epochs=0", "--dry-run"])
    assert proc.exit_code == 2 and "optim.epochs: Input should be greater than or equal to 1" in proc.output


def test_list_shows_the_studies_of_a_storage_with_counts(tmp_path):
    for name, statuses in (("alpha", ["FINISHED", "FINISHED", "DIVERGED"]), ("beta", [])):
        _, raw = write_study(tmp_path, name=name)
        spec = parse_study(raw)
        spec.store.write_text("study.yaml", yaml.safe_dump(raw))
        rows = [{"trial_id": f"t{i}", "status": s} for i, s in enumerate(statuses)]
        for row in rows:
            results.write_trial(spec.store, row)
    proc = CliRunner().invoke(app, ["list", "--storage", str(tmp_path / "out")])
    assert proc.exit_code == 0, proc.output
    lines = proc.output.strip().splitlines()
    assert re.fullmatch(r"alpha\s+12\s+DIVERGED 1, FINISHED 2", lines[1])
    assert re.fullmatch(r"beta\s+12\s+none yet", lines[2])
    (tmp_path / "empty").mkdir()
    empty = CliRunner().invoke(app, ["list", "--storage", str(tmp_path / "empty")])
    assert empty.exit_code == 0 and "no studies in" in empty.output
    missing = CliRunner().invoke(app, ["list", "--storage", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "--storage" in missing.output and "no such folder" in missing.output


def test_best_and_rerun_reject_bad_arguments_before_loading_mlflow_torch_or_ray():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from sweeper.cli import app\n"
        "cases = (['best', '/nonexistent.yaml'], ['rerun'], ['rerun', 'some-run'], ['rerun', '--best', '/no.yaml'])\n"
        "for args in cases:\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    print(result.exit_code, *(m in sys.modules for m in ('mlflow', 'torch', 'ray')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:4] == ["2 False False False"] * 4
