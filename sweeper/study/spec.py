"""The study spec: a YAML file describing a sweep, validated strictly before Ray starts.

name: fig8b_lambda
base: {...}                        # a RunConfig (anpyc_core.config)
search: {strategy.lam: {grid: [0.5, 1, 2, 4]}}
ablations: {full: {}, no_pruning: {strategy.pruning: none}}
seeds: [0, 1, 2]
searcher: grid                     # or optuna (sampler tpe|gp|cmaes|random, num_samples)
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from anpyc_core.config import ConfigError, apply_overrides, read_yaml, validate_config
from sweeper.storage.store import StudyStore, is_uri

#: Metrics a trial reports (val_* for selection, test_* beside them).
#: every metric a study can select on or report; fid_first5 and fid_mean exist for generative runs only
METRICS = [
    f"{split}_{m}"
    for split in ("val", "test")
    for m in ("acc", "bwt", "fwt", "fwt_init", "forgetting", "la", "fid_first5", "fid_mean")
]
MAX_TRIALS_WITHOUT_YES = 200


class QueryError(RuntimeError):
    """Something asked for does not exist: a study never launched, a run id, a metric (exit code 2)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Dimension(_Strict):
    """One searched parameter: exactly one of grid / uniform / loguniform / int / choice."""

    grid: list[Any] | None = Field(None, min_length=1)
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    int: tuple[int, int] | None = None
    choice: list[Any] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> Dimension:
        given = [k for k in ("grid", "uniform", "loguniform", "int", "choice") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of grid, uniform, loguniform, int, choice (got {given or 'none'})")
        lo_hi = self.uniform or self.loguniform or self.int
        if lo_hi is not None and not lo_hi[0] < lo_hi[1]:
            raise ValueError(f"{given[0]}: low must be below high (got {list(lo_hi)})")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError("loguniform: bounds must be positive")
        return self

    @property
    def kind(self) -> str:
        """Which distribution this is."""
        return next(k for k in ("grid", "uniform", "loguniform", "int", "choice") if getattr(self, k) is not None)

    def values(self) -> list[Any]:
        """The finite values (grid or choice); empty for continuous ranges."""
        return list(self.grid or self.choice or [])


class Objective(_Strict):
    """A metric to optimise; selection must use validation metrics."""

    metric: str = "val_acc"
    mode: Literal["max", "min"] = "max"

    @field_validator("metric")
    @classmethod
    def _validation_only(cls, v: str) -> str:
        allowed = [m for m in METRICS if m.startswith("val_")]
        if v not in allowed:
            raise ValueError(f"must be a validation metric, one of {allowed} (got {v!r})")
        return v


class OptunaConfig(_Strict):
    """Optuna searcher settings."""

    sampler: Literal["tpe", "gp", "cmaes", "random"] = "tpe"
    num_samples: int = Field(20, ge=1)
    seed: int = 0


class SchedulerConfig(_Strict):
    """Early stopping; the time attribute is the number of tasks finished."""

    kind: Literal["none", "asha"] = "none"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1.0)


class Resources(_Strict):
    """Per-trial resources (fractional GPUs allowed)."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)


class PackConfig(_Strict):
    """Packed trials: up to `max_members` trials with one pack signature train in one process (1: off;
    `auto`: as many as fit `memory_gb`, or the trial's share of its device, without idling a concurrency slot)."""

    max_members: int | str = 1
    memory_gb: float | None = Field(None, gt=0)

    @field_validator("max_members", mode="before")
    @classmethod
    def _members(cls, v: Any) -> int | str:
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1024):
            return v
        raise ValueError("allowed: an integer in 1..1024, or auto")


class StudySpec(_Strict):
    """A whole study."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,80}$")
    description: str = ""
    base: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, Dimension] = Field(default_factory=dict)
    ablations: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"full": {}})
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    searcher: Literal["grid", "optuna"] = "grid"
    optuna: OptunaConfig = Field(default_factory=OptunaConfig)
    objectives: list[Objective] = Field(default_factory=lambda: [Objective()], min_length=1)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    max_concurrent_trials: int = Field(2, ge=1)
    max_failures: int = Field(2, ge=0)
    resources: Resources = Field(default_factory=Resources)
    pack: PackConfig = Field(default_factory=PackConfig)
    joint_reference: bool = False
    snapshots: Literal["none", "ends", "all"] = "ends"  # task boundaries whose snapshot is kept
    checkpoints: Literal["latest", "all"] = "latest"  # latest: a trial keeps its last two task checkpoints
    storage: str = Field("studies_out", min_length=1)
    tracking_uri: str | None = None

    @model_validator(mode="after")
    def _check(self) -> StudySpec:
        if not self.ablations:
            raise ValueError("ablations: give at least one (e.g. {full: {}})")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: repeated values in {self.seeds}")
        if self.searcher == "grid":
            bad = [k for k, d in self.search.items() if d.kind != "grid"]
            if bad:
                raise ValueError(f"search.{bad[0]}: the grid searcher takes only grid values; use searcher: optuna")
        elif not self.search:
            raise ValueError("search: optuna needs at least one searched parameter")
        if len(self.objectives) > 1 and self.searcher != "optuna":
            raise ValueError("objectives: several objectives need searcher: optuna")
        if len(self.objectives) > 1 and self.optuna.sampler == "cmaes":
            raise ValueError("optuna.sampler: cmaes handles a single objective; use tpe, gp or random")
        if len(self.objectives) > 1 and self.scheduler.kind != "none":
            raise ValueError("scheduler: asha needs a single objective")
        if self.remote_storage and not (self.tracking_uri or "").startswith(("http://", "https://")):
            raise ValueError(
                f"tracking_uri: storage {self.storage} is shared by every node, so the tracking store must be "
                "too: give an MLflow server (--tracking-uri http://HEAD:5000)"
            )
        return self

    # ------------------------------------------------------------ derived
    def trial_count(self) -> int:
        """How many trials the study will run."""
        per_point = len(self.ablations) * len(self.seeds)
        if self.searcher == "grid":
            return per_point * math.prod(len(d.grid) for d in self.search.values())
        return self.optuna.num_samples  # Optuna samples ablation and seed with the rest

    def grid_points(self) -> list[dict[str, Any]]:
        """Every (search values) combination of a grid study."""
        keys = list(self.search)
        return [
            dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(self.search[k].values() for k in keys))
        ]

    def grid_trials(self) -> list[dict[str, Any]]:
        """{ablation, seed, point} of every trial of a grid study, in launch order."""
        return [
            {"ablation": a, "seed": s, "point": p}
            for a in self.ablations
            for s in self.seeds
            for p in self.grid_points()
        ]

    def run_config(self, ablation: str, seed: int, point: dict[str, Any]) -> dict[str, Any]:
        """The validated run config (as a dict) of one trial."""
        overrides = {**self.ablations[ablation], **point, "seed": seed}
        return validate_config(apply_overrides(self.base, overrides)).model_dump(mode="json")

    @property
    def remote_storage(self) -> bool:
        """True when `storage` is an object-store URI (s3://, gs://, ...) rather than a folder."""
        return is_uri(self.storage)

    @property
    def tune_storage(self) -> str:
        """The study's shared folder: Tune's experiment and checkpoints, Parquet, study.yaml (every node
        reaches it: an object store, or a filesystem mounted at the same path on every node)."""
        if self.remote_storage:
            return f"{self.storage.rstrip('/')}/{self.name}"
        return str(Path(self.storage).expanduser().resolve() / self.name)

    @property
    def store(self) -> StudyStore:
        """The study's shared folder, for reading and writing its files."""
        return StudyStore(self.tune_storage)

    @property
    def study_dir(self) -> Path:
        """This machine's folder of the study: the shared folder itself for filesystem storage, else a
        local folder under ~/.anpyc-sweep (reports and the launch lock)."""
        if self.remote_storage:
            return Path("~/.anpyc-sweep/studies").expanduser() / self.name
        return Path(self.tune_storage)

    def resolved_tracking_uri(self) -> str:
        """The MLflow tracking URI: the given one, or a SQLite file in the study folder."""
        return self.tracking_uri or f"sqlite:///{self.study_dir / 'mlflow.db'}"


#: Fields that say where and how fast a study runs, never what it computes: a resumed study may change them.
RUNTIME_FIELDS = {"storage", "tracking_uri", "resources", "max_concurrent_trials", "checkpoints", "max_failures"}


def _format(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f"{loc}: unknown key"
    got = first.get("input")
    got_text = "" if isinstance(got, dict | list) else f" (got {got!r})"
    return f"{loc}: {msg}{got_text}" if loc else msg


def parse_study(raw: dict[str, Any], origin: str = "study") -> StudySpec:
    """Validate a study dict, then every trial config it implies; ConfigError on the first problem."""
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{origin}: {_format(err)}") from None
    try:  # the base as written: a bad value the search happens to override is still a mistake in the file
        validate_config(spec.base)
    except ConfigError as err:
        raise ConfigError(f"{origin}: base: {err}") from None
    for ablation in spec.ablations:
        points = spec.grid_points() if spec.searcher == "grid" else [corner_point(spec, i) for i in (0, 1)]
        for point in points or [{}]:
            where = f"ablation {ablation!r}" + (f" at {point}" if point else "")
            try:
                cfg = spec.run_config(ablation, spec.seeds[0], point)
            except ConfigError as err:
                raise ConfigError(f"{origin}: {where}: {err}") from None
            if cfg["data"]["val_fraction"] == 0:
                raise ConfigError(
                    f"{origin}: {where}: data.val_fraction: 0 leaves no validation split, but the study selects by "
                    f"{spec.objectives[0].metric}; use a fraction in (0, 0.5)"
                )
    return spec


def corner_point(spec: StudySpec, which: int) -> dict[str, Any]:
    point = {}
    for key, dim in spec.search.items():
        if dim.kind in ("grid", "choice"):
            point[key] = dim.values()[-which]
        else:
            lo, hi = dim.uniform or dim.loguniform or dim.int
            point[key] = (lo, hi)[which]
    return point


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study YAML."""
    return parse_study(read_yaml(path), origin=str(path))
