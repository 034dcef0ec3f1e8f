"""Run one generative task sequence (C-GAN or VAE, SPEC §4.5): the loop, evaluation, checkpoints, result.

    trainer = GenerativeTrainer(cfg)          # data, feature classifier, generator (+ critic), strategy
    for record in trainer.run():              # one TaskRecord per finished task
        trainer.save_checkpoint(path)
    result = trainer.result()

The interface is `Trainer`'s, so the CLI and the sweeper run both alike. P[j][i] is the feature
classifier's accuracy (%) on task i's generated images after task j (the share predicted as one of the
task's classes); beside it each record holds FID per task (and, for the VAE, test ELBO per task).
Tasks a C-GAN has not met yet have no class row, so their entries are NaN.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from anpyc_core import __version__
from anpyc_core.config import RunConfig
from anpyc_core.data import TaskSequence, build_tasks, load_data
from anpyc_core.generative.feature_classifier import feature_net, features_for, features_name
from anpyc_core.generative.fid import frechet_distance
from anpyc_core.generative.models import (
    ConditionalDiscriminator,
    ConditionalGenerator,
    ConvDiscriminator,
    ConvGenerator,
    MultiLatentVAE,
    elbo_per_image,
)
from anpyc_core.generative.strategies import build_generative_strategy
from anpyc_core.metrics import bwt, fingerprint, forgetting, learning_accuracy
from anpyc_core.run_state import (
    CheckpointFiles,
    Patience,
    Progress,
    RunResult,
    TaskRecord,
    TrainingDiverged,
    derive_seed,
    resolve_device,
)
from anpyc_core.schedule import learning_rate, per_step, runaway_penalty
from anpyc_core.strategies.base import Phase

FID_FIRST = 5  # Table III reports FID on the first five tasks
_EVAL_STREAM = {"test": 11, "val": 12, "grid": 13, "row": 14, "elbo": 15}


def replay_count(batch: int, share: float) -> int:
    """Old-task images to add to `batch` current ones so that they are `share` of the mixed batch."""
    return int(round(batch * share / (1.0 - share)))


class GenerativeTrainer(CheckpointFiles):
    """One continual generation run (C-GAN or VAE) on one device."""

    def __init__(
        self,
        cfg: RunConfig,
        tasks: TaskSequence | None = None,
        progress: Progress | None = None,
        joint_reference: dict | None = None,
        features: dict | None = None,
    ) -> None:
        self.cfg, self.g = cfg, cfg.generative
        self.device = resolve_device(cfg.device)
        self.progress = progress or (lambda msg: None)
        if tasks is None or features is None:
            raws = load_data(cfg.data)
            tasks = tasks or build_tasks(cfg.data, raws, cfg.seed, self.device)
            features = features or features_for(cfg, raws, self.progress)
        self.tasks, self.features = tasks, features
        self.class_offset = dict(features.get("offsets") or {})  # a sequence: where each benchmark's classes start
        self.joint_reference = joint_reference
        self.feature_net = feature_net(features, self.device)
        torch.manual_seed(derive_seed(cfg.seed, -1))
        num, pixels = len(tasks), tasks.num_features
        if cfg.conv_gan:
            self.model = ConvGenerator(self.g.noise_dim, self.g.embed_dim, tasks.image_shape)
            critic = ConvDiscriminator(num, self.g.embed_dim, tasks.image_shape)
        elif cfg.model.arch == "cgan":
            self.model = ConditionalGenerator(self.g.noise_dim, self.g.embed_dim, tuple(self.g.hidden), pixels)
            critic = ConditionalDiscriminator(num, self.g.embed_dim, tuple(reversed(self.g.hidden)), pixels)
        else:
            self.model, critic = MultiLatentVAE(num, self.g.latent, 256, tasks.image_shape), None
        self.strategy = build_generative_strategy(cfg, self.model, num, critic).to(self.device)
        self.critic = self.strategy.critic
        self.next_task, self.task, self.initial_phase = 0, 0, True
        self.task_seconds: list[float] = []
        self._real: dict[tuple[int, str], np.ndarray] = {}
        self.acc_matrix, self.val_acc_matrix = [], []
        self.extra_matrices: dict[str, list[list[float]]] = {"fid": [], "val_fid": []}
        if cfg.model.arch == "vae":
            self.extra_matrices["elbo"] = []
        self._evaluate_all()

    # ----------------------------------------------------------- the loop
    def run(self) -> Iterator[TaskRecord]:
        """Train the remaining tasks, yielding a record after each (joint: one record)."""
        while self.next_task < len(self.tasks):
            yield self.run_task(self.next_task)

    def run_task(self, t: int) -> TaskRecord:
        """Train task t (with pruning rounds for ANPyC), then evaluate every task."""
        start = time.perf_counter()
        self.task, self.initial_phase = t, True
        torch.manual_seed(derive_seed(self.cfg.seed, t))
        self.shuffle = torch.Generator(device=self.device).manual_seed(derive_seed(self.cfg.seed, t))
        self.noise = torch.Generator(device=self.device).manual_seed(derive_seed(self.cfg.seed, t) + 1)
        joint = self.cfg.strategy.method == "joint"
        finished = len(self.tasks) if joint else t + 1
        self._grow_rows(finished)
        self.model.train()
        loss = self._run_task(t, joint)
        self.model.eval()
        rows = self._evaluate_all(finished)
        seconds = time.perf_counter() - start
        self.task_seconds.append(seconds)
        self.next_task = finished
        fid = rows["fid"][:finished]
        self.progress(
            f"task {finished}/{len(self.tasks)} done in {seconds:.1f}s: generated-sample accuracy "
            f"{rows['test'][finished - 1]:.2f}% on it, mean FID so far {float(np.mean(fid)):.2f}"
        )
        counts = self.strategy.parameter_counts(finished)
        record = TaskRecord(
            finished, len(self.tasks), rows["test"], rows["val"], seconds, loss, self.strategy.penalty()
        )
        record.counts = counts
        record.rounds = list(getattr(self.strategy, "round_stats", []))
        record.extra_rows = {name: rows[name] for name in self.extra_matrices}
        return record

    def _run_task(self, t: int, joint: bool) -> float:
        trainable = self._trainable(t, joint)
        for p in self.model.parameters():
            p.requires_grad_(False)
        for p in trainable:
            p.requires_grad_(True)
        opt = self._optimizer(trainable)
        critic_opt = self._optimizer(list(self.critic.parameters())) if self.critic is not None else None
        if self.cfg.strategy.method == "dgr" and t > 0:
            self._replay = copy.deepcopy(self.model).eval().requires_grad_(False)
        else:
            self._replay = None
        own = list(range(len(self.tasks))) if joint else [t]
        splits = [self.tasks.tasks[i].train for i in own]
        images = torch.cat([s.inputs() for s in splits])  # gathered once per task, not per epoch
        owners = torch.cat([torch.full((len(s),), i, device=self.device) for i, s in zip(own, splits, strict=True)])
        epoch, last = 0, float("nan")

        def fit(epochs: int, patience: int | None = None) -> None:
            nonlocal epoch, last
            stale = Patience(patience)
            for _ in range(epochs):
                last = self._epoch(t, images, owners, opt, critic_opt, epoch)
                epoch += 1
                if stale.exhausted(last):
                    self.progress(f"  task {t + 1}: loss has not decreased for {patience} epochs; next phase")
                    break

        if joint:
            fit(self.cfg.optim.epochs)
            return last
        self.strategy.before_task(t)
        if not self.strategy.skip_initial_training(t):
            fit(self.cfg.optim.epochs, self.cfg.optim.patience)
        self.initial_phase = False
        self.strategy.after_training(t, Phase(self.tasks.tasks[t], opt, fit))
        self.strategy.after_task(t, self.tasks.tasks[t])
        return last

    def _trainable(self, t: int, joint: bool) -> list[torch.nn.Parameter]:
        """The generator's trunk and the current task's class row or latent layer (every task's for joint)."""
        own = list(range(len(self.tasks))) if joint else [t]
        trunk = list(self.model.trunk_parameters().values())
        if isinstance(self.model, ConditionalGenerator):
            return trunk + [self.model.heads[i] for i in own]
        return trunk + [p for i in own for p in self.model.task_parameters(i)]

    def _grow_rows(self, count: int) -> None:
        """Give the C-GAN one class row per task met so far, each drawn from (seed, task)."""
        if not isinstance(self.model, ConditionalGenerator):
            return
        while len(self.model.heads) < count:
            task = len(self.model.heads)
            self.model.add_task(torch.Generator().manual_seed(derive_seed(self.cfg.seed, task) + _EVAL_STREAM["row"]))

    def _optimizer(self, params) -> torch.optim.Optimizer:
        o = self.cfg.optim
        if o.optimizer == "adam":
            return torch.optim.Adam(params, lr=o.lr, betas=(0.5, 0.999))  # the DCGAN setting
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum)

    def _epoch(self, t: int, images: torch.Tensor, owners: torch.Tensor, opt, critic_opt, epoch: int) -> float:
        """One pass over `images` (task ids `owners`; every task's for joint) in shuffled minibatches; mean loss."""
        lr = learning_rate(self.cfg.optim, self.task, epoch, self.initial_phase)
        for group in opt.param_groups:
            group["lr"] = lr
        order = torch.randperm(len(images), generator=self.shuffle, device=self.device)
        bs, total, batches = self.cfg.optim.batch_size, torch.zeros((), device=self.device), 0
        num_batches, stepwise = -(-len(images) // bs), per_step(self.cfg.optim)
        for start in range(0, len(images), bs):
            if stepwise:
                lr = learning_rate(self.cfg.optim, self.task, epoch, self.initial_phase, batches, num_batches)
                for group in opt.param_groups:
                    group["lr"] = lr
            pick = order[start : start + bs]
            x, ids = self.mixed_batch(images[pick], owners[pick], t)
            loss = self._gan_step(x, ids, opt, critic_opt) if critic_opt else self._vae_step(x, ids, opt)
            self.strategy.after_step(t, lr)
            total += loss.detach()
            batches += 1
        loss = float(total) / max(1, batches)
        if not np.isfinite(loss):
            raise TrainingDiverged(f"task {t + 1} epoch {epoch + 1}: training loss became {loss}")
        penalty = self.strategy.penalty()
        if (why := runaway_penalty(self.strategy, loss, penalty)) is not None:
            raise TrainingDiverged(f"task {t + 1} epoch {epoch + 1}: {why}")
        self.progress(f"  task {t + 1} epoch {epoch + 1}: loss {loss:.4f} penalty {penalty:.4g}")
        return loss

    def mixed_batch(self, x: torch.Tensor, ids: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """DGR: current images plus replayed images of earlier tasks, `replay_share` of the batch; else as is."""
        if self._replay is None:
            return x, ids
        k = replay_count(len(x), self.g.replay_share)
        old = torch.randint(0, t, (k,), generator=self.shuffle, device=self.device)
        with torch.no_grad():
            replayed = self.generate(self._replay, old, self.noise)
        return torch.cat([x, replayed]), torch.cat([ids, old])

    def generate(self, model, tasks: torch.Tensor, noise: torch.Generator) -> torch.Tensor:
        """Images of per-sample task ids from `model` (a generator or a VAE's prior)."""
        if isinstance(model, ConditionalGenerator):
            z = torch.randn(len(tasks), model.noise_dim, generator=noise, device=self.device)
            return model(z, tasks)
        out = torch.empty(len(tasks), self.tasks.num_features, device=self.device)
        for task in tasks.unique().tolist():
            where = tasks == task
            out[where] = model.sample(int(where.sum()), int(task), noise)
        return out

    def _gan_step(self, x: torch.Tensor, ids: torch.Tensor, opt, critic_opt) -> torch.Tensor:
        z = torch.randn(len(x), self.model.noise_dim, generator=self.noise, device=self.device)
        fake = self.model(z, ids)
        real_logits, fake_logits = self.critic(x, ids), self.critic(fake.detach(), ids)
        critic_loss = F.binary_cross_entropy_with_logits(
            real_logits, torch.ones_like(real_logits)
        ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        critic_opt.step()
        logits = self.critic(fake, ids)
        loss = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        self.strategy.after_backward(self.task)
        opt.step()
        return loss

    def _vae_step(self, x: torch.Tensor, ids: torch.Tensor, opt) -> torch.Tensor:
        loss = x.new_zeros(())
        for task in ids.unique().tolist():
            where = ids == task
            loss = loss - elbo_per_image(self.model, x[where], int(task), self.noise).sum()
        loss = loss / len(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        self.strategy.after_backward(self.task)
        opt.step()
        return loss

    # ------------------------------------------------------- evaluation
    @torch.no_grad()
    def _evaluate_all(self, finished: int = 0) -> dict[str, list[float]]:
        """Append one row to every matrix: accuracy and FID of generated images per task, ELBO (VAE)."""
        was_training = self.model.training
        self.model.eval()
        rows = {"test": [], "val": [], "fid": [], "val_fid": [], "elbo": []}
        for task in self.tasks.tasks:
            for split, fid_key in (("test", "fid"), ("val", "val_fid")):
                acc, fid = self._sample_quality(task, split)
                rows[split].append(acc)
                rows[fid_key].append(fid)
            if isinstance(self.model, MultiLatentVAE):
                rows["elbo"].append(self._elbo(task))
        self.model.train(was_training)
        while len(self.acc_matrix) <= finished:
            self.acc_matrix.append(rows["test"])
            self.val_acc_matrix.append(rows["val"])
            for name, matrix in self.extra_matrices.items():
                matrix.append(rows[name])
        return rows

    def _sample_quality(self, task, split: str) -> tuple[float, float]:
        """(% of generated images the feature classifier puts in the task's classes, FID against real images)."""
        if isinstance(self.model, ConditionalGenerator) and task.index >= len(self.model.heads):
            return float("nan"), float("nan")
        count = self.g.eval_samples if split == "test" else max(10, self.g.eval_samples // 2)
        noise = torch.Generator(device=self.device).manual_seed(
            derive_seed(self.cfg.seed, task.index) + _EVAL_STREAM[split]
        )
        images = self.generate(self.model, torch.full((count,), task.index, device=self.device), noise)
        feats, preds = self._features(images)
        bench = self.cfg.data.sequence[task.index] if self.cfg.data.sequence else self.cfg.data.benchmark
        classes = torch.as_tensor(task.classes, device=self.device) + self.class_offset.get(bench, 0)
        acc = 100.0 * float(torch.isin(preds, classes).float().mean()) if preds is not None else float("nan")
        return acc, frechet_distance(self._real_features(task, split), feats)

    def _features(self, images: torch.Tensor) -> tuple[np.ndarray, torch.Tensor | None]:
        feats, preds = [], []
        net = self.feature_net
        for start in range(0, len(images), 512):
            f = net.features(images[start : start + 512])
            feats.append(f.cpu().numpy())
            if getattr(net, "classes", 0):
                preds.append(net.out(f).argmax(1))
        return np.concatenate(feats), (torch.cat(preds) if preds else None)

    def _real_features(self, task, split: str) -> np.ndarray:
        key = (task.index, split)
        if key not in self._real:
            self._real[key] = self._features(getattr(task, split).inputs())[0]
        return self._real[key]

    def _elbo(self, task) -> float:
        """Mean test ELBO (nats per image) of the task's test images through its latent layer."""
        noise = torch.Generator(device=self.device).manual_seed(
            derive_seed(self.cfg.seed, task.index) + _EVAL_STREAM["elbo"]
        )
        x = task.test.inputs()
        values = [elbo_per_image(self.model, x[s : s + 1024], task.index, noise) for s in range(0, len(x), 1024)]
        return float(torch.cat(values).mean())

    @torch.no_grad()
    def sample_grid(self, per_task: int = 8) -> torch.Tensor:
        """A (C, H, W) image grid: one row of `per_task` generated images per task learned (fixed noise)."""
        from torchvision.utils import make_grid

        learned = self.next_task if self.next_task else 1
        was_training = self.model.training
        self.model.eval()
        noise = torch.Generator(device=self.device).manual_seed(derive_seed(self.cfg.seed, 0) + _EVAL_STREAM["grid"])
        tasks = torch.arange(learned, device=self.device).repeat_interleave(per_task)
        if isinstance(self.model, ConditionalGenerator):
            tasks = tasks[tasks < len(self.model.heads)]
        images = self.generate(self.model, tasks, noise).view(len(tasks), *self.tasks.image_shape)
        self.model.train(was_training)
        return make_grid(images.cpu(), nrow=per_task, padding=2, pad_value=1.0)

    def save_samples(self, path: str | Path, per_task: int = 8) -> Path:
        """Write `sample_grid` as a PNG (Figs. 4–6's equivalents)."""
        from torchvision.utils import save_image

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(self.sample_grid(per_task), path)
        return path

    # ------------------------------------------------------ checkpoints
    def extra_state(self) -> dict:
        """The FID (and ELBO) matrices beside the accuracy ones."""
        return {"extra_matrices": self.extra_matrices}

    def restore_extra(self, state: dict) -> None:
        """Grow the class rows the checkpoint holds, then take its FID (and ELBO) matrices."""
        self._grow_rows(state["next_task"])
        self.extra_matrices = {k: [list(r) for r in v] for k, v in state["extra_matrices"].items()}

    # ----------------------------------------------------------- result
    def result(self) -> RunResult:
        """Metrics of the finished run: generated-sample ACC/BWT/forgetting/LA and FID (first five, all)."""
        if self.next_task < len(self.tasks):
            raise RuntimeError(f"run unfinished: {self.next_task}/{len(self.tasks)} tasks done")
        return RunResult(
            config=self.cfg.model_dump(mode="json"),
            run_id=self.cfg.run_id(),
            fingerprint={**fingerprint(self.cfg, __version__), "features": features_name(self.features)},
            metrics=generative_metrics(self.acc_matrix, self.extra_matrices, "fid", "elbo"),
            val_metrics=generative_metrics(self.val_acc_matrix, self.extra_matrices, "val_fid", None),
            acc_matrix=self.acc_matrix,
            val_acc_matrix=self.val_acc_matrix,
            seconds=sum(self.task_seconds),
            task_seconds=self.task_seconds,
            joint_reference=self.joint_reference,
            extra_matrices=self.extra_matrices,
        )


def fid_summary(row: list[float], done: int) -> dict[str, float]:
    """FID of the first five tasks learned and of every task learned, from one row of per-task FIDs."""
    return {"fid_first5": float(np.mean(row[: min(FID_FIRST, done)])), "fid_mean": float(np.mean(row[:done]))}


def generative_metrics(P: list[list[float]], extra: dict, fid_key: str, elbo_key: str | None) -> dict:
    """ACC, BWT, forgetting and LA of the generated-sample accuracy matrix, FID of the first five tasks and
    of all (after the last task), and for the VAE task 1's final ELBO."""
    last_fid = extra[fid_key][-1]
    out = {
        "acc": float(np.mean(P[-1])),
        "bwt": bwt(P),
        "forgetting": forgetting(P),
        "la": learning_accuracy(P),
        **fid_summary(last_fid, len(last_fid)),
    }
    if elbo_key and elbo_key in extra:
        out["elbo_task1"] = float(extra[elbo_key][-1][0])
    return out
