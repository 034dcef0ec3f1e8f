"""One validated schema for a continual-learning run (SPEC.md §2-§5), plus YAML loading.

Every choice the spec leaves open is a field here, so a study can sweep it. Validation errors
surface as `ConfigError` with one line that names the field and what is allowed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer, model_validator

Benchmark = Literal[
    "digits", "mnist", "fashion-mnist", "cifar10", "svhn", "stl10", "notmnist", "caltech101", "celeba", "anime"
]
Scenario = Literal["split", "permuted"]
Method = Literal["anpyc", "ewc", "mas", "si", "regularised", "finetune", "sgd", "sgd_f", "joint", "lwf", "hat", "dgr"]
Importance = Literal["anpyc", "mas", "ewc", "si", "magnitude", "random"]
Pruning = Literal["greedy", "none", "greedy_no_pretrain", "random", "xdg"]

#: Methods that are configurations of the one regularised strategy, with their default
#: (importance, pruning). SPEC §5: EWC = (ewc, penalty, none), ANPyC = (anpyc, penalty, greedy).
REGULARISED_PRESETS: dict[str, tuple[str, str]] = {
    "anpyc": ("anpyc", "greedy"),
    "ewc": ("ewc", "none"),
    "mas": ("mas", "none"),
    "si": ("si", "none"),
    "regularised": ("anpyc", "none"),
}

#: Number of classes of each benchmark (Caltech-101: its 101 categories and the background folder).
NUM_CLASSES = {
    "digits": 10,
    "mnist": 10,
    "fashion-mnist": 10,
    "cifar10": 10,
    "svhn": 10,
    "stl10": 10,
    "notmnist": 10,
    "caltech101": 102,
    "celeba": 1,  # one-domain face sets: tasks of the generative archs' data.sequence
    "anime": 1,
}
#: (channels, height, width) of each benchmark's images as loaded (STL-10 is shrunk to 32×32).
IMAGE_SHAPES = {
    "digits": (1, 8, 8),
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "svhn": (3, 32, 32),
    "stl10": (3, 32, 32),
    "notmnist": (1, 28, 28),
    "caltech101": (3, 224, 224),
    "celeba": (3, 32, 32),
    "anime": (3, 32, 32),
}
Arch = Literal["mlp", "vgg9", "resnet18", "lenet", "cgan", "vae"]
#: the generative architectures (SPEC §4.5) and the methods they take
GENERATIVE_ARCHS = ("cgan", "vae")
GENERATIVE_METHODS = ("sgd", "ewc", "mas", "anpyc", "regularised", "joint", "dgr")
GENERATIVE_IMPORTANCES = ("anpyc", "mas", "ewc", "magnitude", "random")


#: named initialisations (`model.init`); anything else must be a path to a state dict file
INIT_NAMES = ("auto", "default", "torchvision", "reference")
CNN_ARCHS = ("vgg9", "lenet", "resnet18")


def _looks_like_path(text: str) -> bool:
    """A `model.init` value that names a file: a folder in it, a home folder, or a file name with a suffix."""
    return "/" in text or text.startswith("~") or "." in Path(text).name


def _changed(section: BaseModel, *names: str) -> list[str]:
    """Which of `names` hold other than their defaults (a dumped and re-read config sets every field)."""
    fields = type(section).model_fields
    return [n for n in names if getattr(section, n) != fields[n].get_default(call_default_factory=True)]


class ConfigError(ValueError):
    """A configuration problem, phrased as one line naming the field and what is allowed."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)


class DataConfig(_Section):
    """Which benchmark, how it is cut into tasks, and the validation hold-out (SPEC §2)."""

    benchmark: Benchmark = "digits"
    scenario: Scenario = "split"
    num_tasks: int | None = Field(None, ge=2, le=100)
    #: 1 only for the generative archs (one class per task, Table III's protocol)
    classes_per_task: int = Field(2, ge=1)
    permute_first: bool = True
    val_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    train_samples: int | None = Field(None, ge=10)
    #: evaluate each task on a seeded stratified subsample of its test split (None: the whole split)
    test_samples: int | None = Field(None, ge=10)
    data_dir: str | None = None
    download: bool = True
    #: several benchmarks in order, one task each with all its classes (the paper's five-dataset sequence)
    sequence: list[Benchmark] | None = Field(None, min_length=2)
    #: split tasks of these class counts, classes drawn at random from the seed (Caltech-101: [30, 25, 25, 22])
    task_classes: list[int] | None = Field(None, min_length=2)
    #: training-time augmentation on the device: random horizontal flips of half the images
    augment: Literal["none", "hflip"] = "none"

    @model_validator(mode="after")
    def _check_tasks(self) -> DataConfig:
        classes = NUM_CLASSES[self.benchmark]
        if self.sequence is None and classes == 1:
            raise ValueError(
                f"data.benchmark: {self.benchmark} is one domain of faces; use it in a data.sequence "
                "(e.g. [celeba, anime]) with model.arch vae or cgan"
            )
        if self.sequence is not None:
            clash = _changed(self, "scenario", "num_tasks", "classes_per_task", "task_classes")
            if clash:
                raise ValueError(
                    f"data.{clash[0]}: a data.sequence has one task per benchmark with all its classes; drop {clash[0]}"
                )
            return self
        if self.task_classes is not None:
            if self.scenario != "split" or _changed(self, "num_tasks", "classes_per_task"):
                raise ValueError(
                    "data.task_classes: gives split tasks' class counts; use it instead of "
                    "num_tasks and classes_per_task, with scenario: split"
                )
            if min(self.task_classes) < 2 or sum(self.task_classes) > classes:
                raise ValueError(
                    f"data.task_classes: counts of at least 2 summing to at most the {classes} classes of "
                    f"{self.benchmark} (got {self.task_classes})"
                )
            return self
        if self.scenario == "split":
            if classes % self.classes_per_task:
                divisors = [d for d in range(1, classes // 2 + 1) if classes % d == 0]
                raise ValueError(
                    f"data.classes_per_task: must divide the {classes} classes of "
                    f"{self.benchmark}; allowed: {divisors} (got {self.classes_per_task})"
                )
            most = classes // self.classes_per_task
            if most < 2:
                raise ValueError(
                    f"data.classes_per_task: {self.classes_per_task} leaves fewer than 2 tasks; "
                    f"allowed: 2..{classes // 2}"
                )
            if self.num_tasks is not None and self.num_tasks > most:
                raise ValueError(
                    f"data.num_tasks: split {self.benchmark} with {self.classes_per_task} classes "
                    f"per task has at most {most} tasks (got {self.num_tasks})"
                )
        elif self.num_tasks is None:
            object.__setattr__(self, "num_tasks", 10)
        return self

    @property
    def tasks(self) -> int:
        """The number of tasks this data section yields."""
        if self.sequence is not None:
            return len(self.sequence)
        if self.task_classes is not None:
            return len(self.task_classes)
        if self.num_tasks is not None:
            return self.num_tasks
        return NUM_CLASSES[self.benchmark] // self.classes_per_task

    @property
    def benchmarks(self) -> list[str]:
        """Every benchmark the tasks come from, each once, in order."""
        return list(dict.fromkeys(self.sequence or [self.benchmark]))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) the model reads: the largest of the benchmarks' (smaller ones are padded)."""
        shapes = [IMAGE_SHAPES[b] for b in self.benchmarks]
        return tuple(max(s[i] for s in shapes) for i in range(3))


class ModelConfig(_Section):
    """The multi-head MLP or CNN (SPEC §3)."""

    arch: Arch = "mlp"
    hidden: list[int] = Field(default_factory=lambda: [512, 256], min_length=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    #: `auto` (resolved at validation): `default` for the MLP and generative models, `torchvision` for the CNNs;
    #: `default`: PyTorch's own init; `torchvision`: as torchvision's models (He/Kaiming for ReLU convs, linear
    #: layers N(0, 0.01), batch norm 1/0; ResNet-18 keeps torchvision's own), CNNs only; `reference`: the authors'
    #: code (truncated normal, std 0.1, biases 0.1); or the path of a local state dict (e.g. converted weights)
    init: str = Field("auto", min_length=1)
    #: batch-norm running statistics of the CNNs: one set per task, or one shared set (plain PyTorch)
    bn_stats: Literal["per_task", "shared"] = "per_task"

    @model_validator(mode="before")
    @classmethod
    def _null_hidden_is_unset(cls, data: Any) -> Any:
        """`model.hidden: null` (e.g. `--set model.hidden=null`) drops the widths, so that an MLP config can
        switch to a fixed-layer architecture."""
        if isinstance(data, dict) and "hidden" in data and data["hidden"] is None:
            data = {k: v for k, v in data.items() if k != "hidden"}
        return data

    @model_validator(mode="after")
    def _check_widths(self) -> ModelConfig:
        bad = [w for w in self.hidden if w <= 0]
        if bad:
            raise ValueError(f"model.hidden: widths must be positive integers (got {self.hidden})")
        if self.init == "auto":  # a config dumped before `auto` existed says `default`: it keeps PyTorch's init
            self.init = "torchvision" if self.arch in CNN_ARCHS else "default"
        elif self.init not in INIT_NAMES and not _looks_like_path(self.init):
            raise ValueError(
                f"model.init: {self.init!r} is not one of {', '.join(INIT_NAMES)}, nor a path to a state dict file"
            )
        if self.init == "torchvision" and self.arch not in CNN_ARCHS:
            raise ValueError(
                f"model.init: torchvision initialises the CNNs ({', '.join(CNN_ARCHS)}); model.arch {self.arch} "
                "takes default, reference or a state dict file"
            )
        return self


class StrategyConfig(_Section):
    """importance × consolidation × pruning, and the other baselines' knobs (SPEC §4-§5)."""

    method: Method = "anpyc"
    importance: Importance | None = None
    importance_batch: int = Field(100, ge=1)
    importance_samples: int | None = Field(None, ge=1)
    fisher: Literal["empirical", "expected"] = "empirical"
    accumulate: Literal["sum", "max"] = "sum"
    consolidation: Literal["penalty", "update"] = "penalty"
    lam: float = Field(1.0, ge=0.0)
    si_xi: float = Field(0.1, gt=0.0)
    pruning: Pruning | None = None
    beta: float = Field(50.0, ge=0.0, lt=100.0)
    beta_decay: float = Field(0.8, gt=0.0, le=1.0)
    prune_step: float = Field(10.0, gt=0.0, le=100.0)
    prune_scope: Literal["tensor", "global"] = "tensor"
    #: `exact`: P_t = β·decay^t, rounds stop exactly at P_t; `reference`: the authors' code, P_t = int(decay·P_{t-1})
    #: and rounds of `prune_step` that may overshoot P_t
    prune_schedule: Literal["exact", "reference"] = "exact"
    #: `free`: task 1's rounds also free every weight with Ω = 0 (the paper's rule; it cascades);
    #: `rank`: Ω = 0 weights compete like the others and a round frees exactly its percentage
    zero_importance: Literal["free", "rank"] = "free"
    #: points of the task's validation accuracy one pruning round may cost: a round that costs more is undone
    #: (weights and free set of the last round within it) and the task's rounds stop; None: the fixed schedule
    prune_tolerance: float | None = Field(None, ge=0.0, le=100.0)
    prune_last: bool = False
    xdg_gate: float = Field(0.8, ge=0.0, lt=1.0)
    lwf_alpha: float = Field(1.0, ge=0.0)
    lwf_temperature: float = Field(2.0, gt=0.0)
    hat_smax: float = Field(400.0, gt=1.0)
    hat_c: float = Field(0.75, ge=0.0)
    hat_clamp: float = Field(6.0, gt=0.0)

    @model_validator(mode="after")
    def _resolve_preset(self) -> StrategyConfig:
        preset = REGULARISED_PRESETS.get(self.method)
        if preset is None:
            for name in ("importance", "pruning"):
                value = getattr(self, name)
                if value is not None and not (name == "pruning" and value == "none"):
                    raise ValueError(
                        f"strategy.{name}: only the regularised methods "
                        f"{sorted(REGULARISED_PRESETS)} take it (method is {self.method!r})"
                    )
            object.__setattr__(self, "pruning", "none")
            return self
        if self.importance is None:
            object.__setattr__(self, "importance", preset[0])
        if self.pruning is None:
            object.__setattr__(self, "pruning", preset[1])
        return self

    @property
    def regularised(self) -> bool:
        """True for the methods that are importance × consolidation × pruning."""
        return self.method in REGULARISED_PRESETS


class OptimConfig(_Section):
    """Optimiser and schedule (SPEC §4.4)."""

    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.1, gt=0.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    batch_size: int = Field(256, ge=1)
    lr_decay: float = Field(1.0, gt=0.0, le=1.0)
    lr_decay_epochs: int = Field(1, ge=1)
    #: decay every this many SGD steps instead of every `lr_decay_epochs` epochs; fractional allowed (the
    #: authors' code decays every 5·55000/256 = 1074.21875 steps, with steps counted through the task's
    #: pruning rounds); None: by epochs
    lr_decay_steps: float | None = Field(None, gt=0.0)
    #: the decay rate in task 1's initial training phase (the authors' code: 0.99); None: `lr_decay`
    lr_decay_first: float | None = Field(None, gt=0.0, le=1.0)
    epochs: int = Field(5, ge=1)
    retrain_epochs: int = Field(1, ge=0)
    #: the paper's rule: a task's initial training ends once its training loss has not decreased for this
    #: many epochs (`epochs` stays the cap); None: always `epochs`
    patience: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_decay_unit(self) -> OptimConfig:
        if self.lr_decay_steps is not None and "lr_decay_epochs" in self.model_fields_set and self.lr_decay_epochs != 1:
            raise ValueError(
                "optim.lr_decay_steps and optim.lr_decay_epochs: set one decay unit, not both "
                "(lr_decay_steps counts SGD steps, lr_decay_epochs whole epochs)"
            )
        return self


class GenerativeConfig(_Section):
    """The generative runs' knobs (model.arch cgan or vae; SPEC §4.5, issue 13)."""

    noise_dim: int = Field(100, ge=1)
    embed_dim: int = Field(32, ge=1)
    #: the C-GAN generator's hidden widths (the critic mirrors them; MLP version only)
    hidden: list[int] = Field(default_factory=lambda: [256, 512], min_length=1)
    #: the C-GAN's networks: MLP, DCGAN-style convolutions (32×32 images), or `auto` (conv for 32×32, else MLP)
    net: Literal["auto", "mlp", "conv"] = "auto"
    latent: int = Field(16, ge=1)
    #: H of the label-free measure: the generated pixels' entropy, or the critic's output entropy
    gen_importance: Literal["pixel_entropy", "disc_entropy"] = "pixel_entropy"
    #: dgr: the share of each training batch that is replayed old-task samples (0 < share < 1)
    replay_share: float = Field(0.5, gt=0.0, lt=1.0)
    #: generated images per task for FID and the feature classifier's accuracy
    eval_samples: int = Field(1000, ge=10)
    #: `auto`: the project's feature classifier, trained once per benchmark and cached; a PATH: such a cached
    #: classifier file; `inception:PATH`: torchvision Inception-v3 weights (pool features, 2048-d)
    features: str = Field("auto", min_length=1)
    #: where `auto` caches feature classifiers (None: $ANPYC_CACHE or ~/.cache/anpyc-sweep)
    feature_cache: str | None = None
    feature_epochs: int = Field(3, ge=1)


class RunConfig(_Section):
    """Everything one task sequence needs: the single source of truth for a run."""

    seed: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    generative: GenerativeConfig = Field(default_factory=GenerativeConfig)

    @model_serializer(mode="wrap")
    def _drop_unused_generative(self, handler):
        """Classifier configs dump without the `generative` section (their run ids predate it)."""
        out = handler(self)
        if self.model.arch not in GENERATIVE_ARCHS and isinstance(out, dict):
            out.pop("generative", None)
        if isinstance(out, dict) and self.strategy.prune_tolerance is None:  # run ids from before the option
            out.get("strategy", {}).pop("prune_tolerance", None)
        if isinstance(out, dict) and self.optim.lr_decay_steps is None:  # run ids from before the option
            out.get("optim", {}).pop("lr_decay_steps", None)
        return out

    @property
    def conv_gan(self) -> bool:
        """True when a C-GAN run uses the DCGAN-style networks."""
        net = self.generative.net
        return self.model.arch == "cgan" and (
            net == "conv" or (net == "auto" and self.data.image_shape[1:] == (32, 32))
        )

    @property
    def generative_run(self) -> bool:
        """True for the C-GAN and VAE (a generative trainer runs them)."""
        return self.model.arch in GENERATIVE_ARCHS

    @model_validator(mode="after")
    def _check_model_fits(self) -> RunConfig:
        from anpyc_core.arch_shapes import input_refusal

        arch, method, pruning = self.model.arch, self.strategy.method, self.strategy.pruning
        if arch in GENERATIVE_ARCHS:
            return self._check_generative()
        if method == "dgr":
            raise ValueError(
                f"strategy.method: dgr replays a generator; it takes model.arch {' or '.join(GENERATIVE_ARCHS)}"
            )
        if self.data.sequence is None and self.data.scenario == "split" and self.data.classes_per_task < 2:
            raise ValueError("data.classes_per_task: a classifier's task needs at least 2 classes (1 is for cgan, vae)")
        one_class = [b for b in self.data.sequence or [] if NUM_CLASSES[b] < 2]
        if one_class:
            raise ValueError(f"data.sequence: {one_class[0]} has one class; only model.arch vae or cgan take it")
        if arch == "mlp":
            return self
        refusal = input_refusal(arch, self.data.image_shape)
        if refusal:
            raise ValueError(f"{refusal} ({', '.join(self.data.benchmarks)})")
        if method == "hat":
            raise ValueError(f"strategy.method: hat gates MLP units only; with model.arch {arch} use another method")
        if method == "joint" and self.model.bn_stats == "per_task" and arch != "lenet":
            raise ValueError(
                "model.bn_stats: joint trains every task at once, so per-task batch-norm statistics would stay "
                "untrained; use model.bn_stats: shared"
            )
        if pruning == "xdg" and arch == "resnet18":
            raise ValueError(
                "strategy.pruning: xdg gates the channels of vgg9 and lenet; resnet18's residual "
                "blocks have no single gate point"
            )
        return self

    @model_validator(mode="after")
    def _check_widths_last(self) -> RunConfig:
        """Widths on a fixed-layer architecture: checked after the method, the order a user fixes them in."""
        if self.model.arch != "mlp" and _changed(self.model, "hidden"):
            raise ValueError(
                f"model.hidden: only arch mlp takes hidden widths ({self.model.arch}'s layers are fixed); "
                "drop them with model.hidden: null (--set model.hidden=null)"
            )
        return self

    def _check_generative(self) -> RunConfig:
        arch, s = self.model.arch, self.strategy
        if s.method not in GENERATIVE_METHODS:
            raise ValueError(
                f"strategy.method: model.arch {arch} takes {', '.join(GENERATIVE_METHODS)} (got {s.method})"
            )
        if s.regularised and s.importance not in GENERATIVE_IMPORTANCES:
            raise ValueError(
                f"strategy.importance: a generator takes {', '.join(GENERATIVE_IMPORTANCES)} (got {s.importance})"
            )
        if s.pruning == "xdg":
            raise ValueError("strategy.pruning: xdg gates classifier units; a generator takes greedy, random or none")
        if self.data.scenario != "split" and self.data.sequence is None:
            raise ValueError(
                f"data.scenario: model.arch {arch} learns split tasks (or a data.sequence); got {self.data.scenario}"
            )
        c, h, w = self.data.image_shape
        if arch == "cgan" and self.generative.net == "conv" and (h, w) != (32, 32):
            raise ValueError(f"generative.net: conv generates 32x32 images; {self.data.benchmark}'s are {h}x{w}")
        if arch == "vae" and (h % 4 or w % 4):
            raise ValueError(
                f"model.arch: vae needs image sides divisible by 4 (got {h}x{w} from {self.data.benchmark})"
            )
        if _changed(self.model, "dropout") or self.model.init != "default":
            raise ValueError(f"model.dropout: model.arch {arch} takes neither dropout nor init; set them in generative")
        return self

    def run_id(self) -> str:
        """A short id derived from the resolved config: equal configs get equal ids."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _format_error(err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"]
    if msg.startswith("Value error, "):
        return msg[len("Value error, ") :]
    if first["type"] == "extra_forbidden":
        section = _section_for(first["loc"][:-1])
        allowed = ", ".join(section.model_fields) if section else "?"
        return f"{loc}: unknown key; allowed keys here: {allowed}"
    got = first.get("input")
    got_text = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"{loc}: {msg}{got_text}"


def _section_for(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] = RunConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type):
            return None
        model = field.annotation
    return model


def validate_config(raw: dict[str, Any]) -> RunConfig:
    """Validate a plain dict into a RunConfig, raising ConfigError with a one-line message."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err)) from None


def parse_override(text: str) -> tuple[str, Any]:
    """Split `key.path=value` into the dotted key and its YAML-typed value."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. strategy.lam=4")
    key, value = text.split("=", 1)
    try:
        parsed = yaml.safe_load(value) if value else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


def apply_overrides(raw: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Return a deep copy of `raw` with dotted-key overrides set (sections created as needed)."""
    out = json.loads(json.dumps(raw))
    for key, value in overrides.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{key}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return out


class DuplicateKeyError(yaml.YAMLError):
    """A mapping names the same key twice (YAML would silently keep the last)."""

    def __init__(self, key: Any, line: int) -> None:
        super().__init__(f"duplicate key {key!r} at line {line}")
        self.key, self.line = key, line


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of merging them."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise DuplicateKeyError(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, raising ConfigError for a missing, unreadable or malformed file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except DuplicateKeyError as err:
        raise ConfigError(f"{path}: {err}; each key may appear once per section") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{where}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML run config (or the defaults when path is None) with `--set` overrides."""
    raw = read_yaml(path) if path is not None else {}
    pairs = dict(parse_override(o) for o in overrides or [])
    return validate_config(apply_overrides(raw, pairs))
