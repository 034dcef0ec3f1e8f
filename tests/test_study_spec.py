"""Study specs: trial counts, and a corpus of bad specs that fail with exit 2 before Ray starts."""

import pytest
import ray
import yaml
from typer.testing import CliRunner

from sweeper.cli import app
from sweeper.study.spec import parse_study

BASE = {"data": {"benchmark": "digits"}, "model": {"hidden": [8]}, "optim": {"epochs": 1}}
GOOD = {
    "name": "s",
    "base": BASE,
    "search": {"strategy.lam": {"grid": [1, 2, 3]}},
    "ablations": {"full": {}, "no_pruning": {"strategy.pruning": "none"}},
    "seeds": [0, 1],
}


def with_(**changes):
    spec = yaml.safe_load(yaml.safe_dump(GOOD))
    for key, value in changes.items():
        spec[key] = value
    return spec


BAD = [
    ("malformed", "name: [unclosed\n", "malformed YAML"),
    ("unknown top key", with_(serchers="grid"), "serchers: unknown key"),
    ("bad name", with_(name="has space"), "name"),
    ("base unknown field", with_(base={"model": {"widht": 3}}), "model.widht: unknown key"),
    ("base bad value", with_(base={"strategy": {"beta": -1}}), "strategy.beta"),
    ("search unknown field", with_(search={"strategy.lamda": {"grid": [1]}}), "strategy.lamda"),
    ("search empty grid", with_(search={"strategy.lam": {"grid": []}}), "search.strategy.lam.grid"),
    ("search two kinds", with_(search={"strategy.lam": {"grid": [1], "uniform": [0, 1]}}), "exactly one"),
    (
        "search reversed range",
        with_(searcher="optuna", search={"strategy.lam": {"uniform": [2, 1]}}),
        "low must be below high",
    ),
    ("loguniform zero", with_(searcher="optuna", search={"strategy.lam": {"loguniform": [0, 1]}}), "positive"),
    ("grid with range", with_(search={"strategy.lam": {"uniform": [0, 1]}}), "use searcher: optuna"),
    ("bad grid value", with_(search={"strategy.beta": {"grid": [10, 150]}}), "strategy.beta"),
    ("ablation bad value", with_(ablations={"x": {"strategy.pruning": "magic"}}), "ablation 'x'"),
    ("ablation unknown field", with_(ablations={"x": {"strategy.prunning": "none"}}), "strategy.prunning"),
    ("no ablations", with_(ablations={}), "ablations"),
    ("no seeds", with_(seeds=[]), "seeds"),
    ("repeated seeds", with_(seeds=[1, 1]), "repeated"),
    ("unknown searcher", with_(searcher="hyperband"), "searcher"),
    ("unknown sampler", with_(searcher="optuna", optuna={"sampler": "annealing"}), "optuna.sampler"),
    ("test metric objective", with_(objectives=[{"metric": "test_acc"}]), "must be a validation metric"),
    ("multi-objective grid", with_(objectives=[{"metric": "val_acc"}, {"metric": "val_bwt"}]), "need searcher: optuna"),
    ("unknown scheduler", with_(scheduler={"kind": "pbt"}), "scheduler.kind"),
    ("negative gpu", with_(resources={"cpu": 1, "gpu": -1}), "resources.gpu"),
    ("optuna without search", with_(searcher="optuna", search={}), "optuna needs at least one"),
    ("incompatible split", with_(base={"data": {"classes_per_task": 3}}), "data.classes_per_task"),
]


@pytest.mark.parametrize("case,spec,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_specs_exit_2_naming_the_problem_without_starting_ray(tmp_path, monkeypatch, case, spec, needle):
    def no_ray(*a, **k):
        raise AssertionError("ray.init must not be called for a bad spec")

    monkeypatch.setattr(ray, "init", no_ray)
    path = tmp_path / "study.yaml"
    path.write_text(spec if isinstance(spec, str) else yaml.safe_dump({**spec, "storage": str(tmp_path / "out")}))
    for command in ("validate", "launch"):
        result = CliRunner().invoke(app, [command, str(path)])
        assert result.exit_code == 2, (command, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_too_many_trials_needs_yes(tmp_path, monkeypatch):
    monkeypatch.setattr(ray, "init", lambda *a, **k: (_ for _ in ()).throw(AssertionError("no ray")))
    big = with_(
        search={"strategy.lam": {"grid": list(range(60))}, "strategy.beta": {"grid": [1, 2]}},
        storage=str(tmp_path / "out"),
    )
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(big))
    result = CliRunner().invoke(app, ["launch", str(path)])
    assert result.exit_code == 2 and "pass --yes" in result.output
    assert not (tmp_path / "out").exists()


def test_trial_counts():
    assert parse_study(GOOD).trial_count() == 3 * 2 * 2
    optuna = parse_study(
        with_(searcher="optuna", search={"strategy.lam": {"loguniform": [0.1, 10]}}, optuna={"num_samples": 7})
    )
    assert optuna.trial_count() == 7


def test_validate_prints_trial_count(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0 and "12 trials" in result.output


@pytest.mark.parametrize(
    "path",
    sorted(__import__("pathlib").Path(__file__).resolve().parents[1].glob("studies/*.yaml")),
    ids=lambda p: p.name,
)
def test_shipped_studies_validate(path):
    from sweeper.study.spec import load_study

    spec = load_study(path)
    assert spec.trial_count() >= 1
    assert path.read_text().startswith("#")  # each says what it mirrors and what it costs


@pytest.mark.parametrize("sampler", ["tpe", "gp", "cmaes", "random"])
def test_every_optuna_sampler_builds(sampler):
    from sweeper.running.launch import search_algorithm

    spec = parse_study(
        with_(
            searcher="optuna",
            search={"strategy.lam": {"loguniform": [0.1, 10]}},
            optuna={"sampler": sampler, "num_samples": 2},
        )
    )
    assert type(search_algorithm(spec)).__name__ == "OptunaSearch"
