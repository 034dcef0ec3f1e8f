"""The packed Optuna searcher: each Tune trial is a pack of configurations asked from one Optuna study.

`suggest` asks up to `pack.max_members` trials of the study's Optuna study (ask-and-tell), groups them by
pack signature (a searched width or method makes several packs) and hands Tune one pack at a time;
when a pack ends, every member's own final objective values are told back to its own Optuna trial
(diverged or failed: FAIL; stopped by member ASHA: PRUNED). `optuna.num_samples` counts configurations,
as without packing. The Optuna study is the one `anpyc-sweep ui --optuna` opens.
"""

from __future__ import annotations

import json
import pickle
from typing import Any

from ray.tune.search import Searcher

from anpyc_core.config import validate_config
from anpyc_core.packing import group_by_signature
from sweeper.study.spec import StudySpec

_PRIMITIVE = (str, int, float, bool, type(None))


def optuna_distributions(spec: StudySpec) -> dict[str, Any]:
    """The Optuna distribution of every sampled name (searched keys, plus ablation and seed when several)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    if len(spec.ablations) > 1:
        out["ablation"] = CategoricalDistribution(list(spec.ablations))
    if len(spec.seeds) > 1:
        out["seed"] = CategoricalDistribution(spec.seeds)
    for key, dim in spec.search.items():
        if dim.kind in ("grid", "choice"):
            out[key] = CategoricalDistribution([_encode(v) for v in dim.values()])
        elif dim.kind == "uniform":
            out[key] = FloatDistribution(*dim.uniform)
        elif dim.kind == "loguniform":
            out[key] = FloatDistribution(*dim.loguniform, log=True)
        else:
            out[key] = IntDistribution(*dim.int)
    return out


def _encode(value: Any) -> Any:
    """Optuna's categorical choices must be primitives: lists (e.g. widths) travel as JSON text."""
    return value if isinstance(value, _PRIMITIVE) else json.dumps(value)


def _decode(value: Any, choices: list[Any]) -> Any:
    for choice in choices:
        if _encode(choice) == value:
            return choice
    return value


class PackedOptunaSearch(Searcher):
    """Tune searcher whose every suggestion is a pack of Optuna-asked configurations (see module doc)."""

    def __init__(self, spec: StudySpec, storage_url: str, sampler: Any) -> None:
        objectives = spec.objectives
        super().__init__(metric=objectives[0].metric, mode=objectives[0].mode)
        self.spec_dict = spec.model_dump(mode="json")
        self.storage_url = storage_url
        self.sampler = sampler
        self.queue: list[list[dict]] = []  # asked packs not yet handed to Tune
        self.running: dict[str, list[dict]] = {}  # Tune trial id -> its members
        self.asked = 0
        self._study = None

    # ------------------------------------------------------------ optuna
    @property
    def spec(self) -> StudySpec:
        """The study spec (rebuilt from its dict: the searcher is pickled with the Tuner)."""
        return StudySpec.model_validate(self.spec_dict)

    @property
    def study(self):
        """The persistent Optuna study (created on first use; reopened after a restore)."""
        if self._study is None:
            import optuna

            spec = self.spec
            self._study = optuna.create_study(
                study_name=spec.name,
                storage=optuna.storages.RDBStorage(self.storage_url),
                sampler=self.sampler,
                directions=[o.mode.replace("max", "maximize").replace("min", "minimize") for o in spec.objectives],
                load_if_exists=True,
            )
        return self._study

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_study"] = None  # an open database connection does not pickle
        return state

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        """The metric and mode come from the study spec; nothing to take from Tune."""
        return True

    # ------------------------------------------------------------ tune
    def suggest(self, trial_id: str) -> dict | str | None:
        """The next pack ({"pack": JSON list of members}), or FINISHED once every sample was asked."""
        if not self.queue:
            total = self.spec.optuna.num_samples
            if self.asked >= total:
                return Searcher.FINISHED
            self.queue = self._ask(min(self.spec.pack.max_members, total - self.asked))
        members = self.queue.pop(0)
        self.running[trial_id] = members
        return {"pack": json.dumps(members)}

    def _ask(self, count: int) -> list[list[dict]]:
        """Ask `count` Optuna trials; their members grouped into packs by signature."""
        spec, dists = self.spec, optuna_distributions(self.spec)
        members = []
        for _ in range(count):
            trial = self.study.ask(dists)
            point = {k: _decode(trial.params[k], spec.search[k].values()) for k in spec.search}
            members.append(
                {
                    "ablation": trial.params.get("ablation", next(iter(spec.ablations))),
                    "seed": trial.params.get("seed", spec.seeds[0]),
                    "point": point,
                    "optuna_trial": trial.number,
                }
            )
            self.asked += 1
        cfgs = [validate_config(spec.run_config(m["ablation"], m["seed"], m["point"])) for m in members]
        return [[members[i] for i in group] for group in group_by_signature(cfgs, len(members))]

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Tell every member's own values (or its FAIL / PRUNED state) to its Optuna trial."""
        from optuna.trial import TrialState

        members = self.running.pop(trial_id, None)
        if members is None:
            return
        parts = json.loads(result["members"]) if result and "members" in result else [{} for _ in members]
        metrics = [o.metric for o in self.spec.objectives]
        for member, part in zip(members, parts, strict=True):
            number = member["optuna_trial"]
            values = [part.get(m) for m in metrics]
            # skip_if_finished: a pack replayed after a restore tells each member once
            if "stopped" in part:
                self.study.tell(number, state=TrialState.PRUNED, skip_if_finished=True)
            elif error or "diverged" in part or not all(isinstance(v, int | float) for v in values):
                self.study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
            else:
                self.study.tell(number, [float(v) for v in values], skip_if_finished=True)

    def save(self, checkpoint_path: str) -> None:
        """Pickle what is not in the Optuna database: the queue, the running packs, the count asked."""
        with open(checkpoint_path, "wb") as fh:
            pickle.dump({"queue": self.queue, "running": self.running, "asked": self.asked}, fh)

    def restore(self, checkpoint_path: str) -> None:
        """Undo `save`."""
        with open(checkpoint_path, "rb") as fh:
            state = pickle.load(fh)  # noqa: S301 - our own file in the study folder
        self.queue, self.running, self.asked = state["queue"], state["running"], state["asked"]
