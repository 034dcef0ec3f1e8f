"""The one config schema: defaults, presets, and one-line errors naming the field."""

import pytest

from anpyc_core.config import ConfigError, load_config, validate_config

BAD = [
    ({"strategy": {"lam": -1}}, "strategy.lam"),
    ({"strategy": {"beta": 100}}, "strategy.beta"),
    ({"strategy": {"beta": -5}}, "strategy.beta"),
    ({"strategy": {"beta_decay": 0}}, "strategy.beta_decay"),
    ({"strategy": {"beta_decay": 1.5}}, "strategy.beta_decay"),
    ({"model": {"hidden": [128, 0]}}, "model.hidden"),
    ({"model": {"hidden": []}}, "model.hidden"),
    ({"model": {"hidden": "wide"}}, "model.hidden"),
    ({"data": {"num_tasks": 1, "scenario": "permuted"}}, "data.num_tasks"),
    ({"data": {"classes_per_task": 3}}, "data.classes_per_task"),
    ({"data": {"classes_per_task": 10}}, "data.classes_per_task"),
    ({"data": {"num_tasks": 6}}, "data.num_tasks"),
    ({"data": {"benchmark": "cifar"}}, "data.benchmark"),
    ({"strategy": {"method": "foo"}}, "strategy.method"),
    ({"strategy": {"importance": "hessian"}}, "strategy.importance"),
    ({"strategy": {"pruning": "magic"}}, "strategy.pruning"),
    ({"strategy": {"method": "lwf", "importance": "mas"}}, "strategy.importance"),
    ({"optim": {"optimizer": "rmsprop"}}, "optim.optimizer"),
    ({"optim": {"lr": 0}}, "optim.lr"),
    ({"optim": {"batch_size": "big"}}, "optim.batch_size"),
    ({"strategy": {"lambda": 1}}, "strategy.lambda"),
    ({"bogus": 1}, "bogus"),
]


@pytest.mark.parametrize("raw,field", BAD)
def test_bad_values_give_one_line_errors_naming_the_field(raw, field):
    with pytest.raises(ConfigError) as err:
        validate_config(raw)
    msg = str(err.value)
    assert msg.startswith(field) and "\n" not in msg


def test_unknown_key_lists_allowed_keys():
    with pytest.raises(ConfigError, match="allowed keys here: .*importance_batch"):
        validate_config({"strategy": {"lamda": 1}})


def test_presets_fill_importance_and_pruning():
    anpyc = validate_config({})
    assert (anpyc.strategy.method, anpyc.strategy.importance, anpyc.strategy.pruning) == (
        "anpyc",
        "anpyc",
        "greedy",
    )
    ewc = validate_config({"strategy": {"method": "ewc"}})
    assert (ewc.strategy.importance, ewc.strategy.pruning) == ("ewc", "none")
    swap = validate_config({"strategy": {"method": "anpyc", "importance": "mas"}})
    assert (swap.strategy.importance, swap.strategy.pruning) == ("mas", "greedy")


def test_resolved_config_round_trips_with_the_same_run_id():
    cfg = validate_config({"strategy": {"method": "finetune"}, "data": {"scenario": "permuted"}})
    again = validate_config(cfg.model_dump(mode="json"))
    assert again == cfg and again.run_id() == cfg.run_id()
    assert cfg.data.num_tasks == 10
    assert validate_config({"seed": 1}).run_id() != validate_config({"seed": 2}).run_id()


def test_yaml_loading_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("strategy: {method: mas, lam: 2}\nmodel: {hidden: [8]}\n")
    cfg = load_config(path, ["strategy.lam=0.5", "model.hidden=[4, 4]", "optim.optimizer=adam"])
    assert cfg.strategy.lam == 0.5 and cfg.model.hidden == [4, 4] and cfg.optim.optimizer == "adam"
    path.write_text("strategy: {method: mas\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_config(path)
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(None, ["strategy.lam"])
