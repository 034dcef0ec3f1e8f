"""Run one task sequence: the training loop, evaluation, checkpoints and the result.

    trainer = Trainer(cfg)                   # data, model, strategy
    for record in trainer.run():             # one TaskRecord per finished task
        trainer.save_checkpoint(path)        # optional, at any task boundary
    result = trainer.result()

Randomness is re-derived from (seed, task) at the start of every task, so resuming from a
task-boundary checkpoint replays the remaining tasks bit-identically on CPU.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import torch
from torch.nn import functional as F

from anpyc_core import __version__
from anpyc_core.config import RunConfig
from anpyc_core.data import TaskSequence, build_tasks, load_data
from anpyc_core.data.tasks import Split
from anpyc_core.importance import anpyc_importance
from anpyc_core.joint import JointData
from anpyc_core.metrics import fingerprint, summarize
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
from anpyc_core.schedule import learning_rate, per_step, runaway_penalty, stability_message, stability_numbers
from anpyc_core.strategies import Phase, build_model, build_strategy


@torch.no_grad()
def accuracy(model, split: Split, task: int, chunk: int = 4096) -> float:
    """Accuracy (%) of `task`'s head on `split` (model must be in eval mode)."""
    if len(split) == 0:
        return float("nan")
    correct = torch.zeros((), dtype=torch.long, device=split.labels.device)
    for start in range(0, len(split), chunk):
        sl = slice(start, start + chunk)
        correct += (model(split.inputs(sl), task).argmax(1) == split.labels[sl]).sum()
    return 100.0 * int(correct) / len(split)



class Trainer(CheckpointFiles):
    """One continual-learning run on one device."""

    def __init__(
        self,
        cfg: RunConfig,
        tasks: TaskSequence | None = None,
        progress: Progress | None = None,
        joint_reference: dict | None = None,
    ) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        if tasks is None:
            tasks = build_tasks(cfg.data, load_data(cfg.data), cfg.seed, self.device)
        self.tasks = tasks
        self.progress = progress or (lambda msg: None)
        self.joint_reference = joint_reference
        torch.manual_seed(derive_seed(cfg.seed, -1))
        model = build_model(cfg, tasks.image_shape, tasks.head_sizes)
        self.strategy = build_strategy(cfg, model.to(self.device), len(tasks))
        self.model = self.strategy.model
        self.next_task = 0
        self.task, self.initial_phase, self.stability = 0, True, None
        self.task_seconds: list[float] = []
        self.prune_flags: list[str] = []
        self.acc_matrix = [self.evaluate("test")]
        self.val_acc_matrix = [self.evaluate("val")]

    # ----------------------------------------------------------- the loop
    def run(self) -> Iterator[TaskRecord]:
        """Train the remaining tasks, yielding a record after each (joint: one record)."""
        while self.next_task < len(self.tasks):
            yield self.run_task(self.next_task)

    def run_task(self, t: int) -> TaskRecord:
        """Train task t (with pruning rounds), then evaluate every task."""
        start = time.perf_counter()
        self.task, self.initial_phase, self.stability = t, True, None
        torch.manual_seed(derive_seed(self.cfg.seed, t))
        self.shuffle = torch.Generator(device=self.device).manual_seed(derive_seed(self.cfg.seed, t))
        self.model.train()
        if self.cfg.strategy.method == "joint":
            loss = self._fit_joint()
            finished = len(self.tasks)
        else:
            loss = self._run_sequential_task(t)
            finished = t + 1
        self.model.eval()
        acc_row, val_row = self.evaluate("test"), self.evaluate("val")
        while len(self.acc_matrix) <= finished:
            self.acc_matrix.append(acc_row)
            self.val_acc_matrix.append(val_row)
        seconds = time.perf_counter() - start
        self.task_seconds.append(seconds)
        self.next_task = finished
        penalty = self.strategy.penalty()
        self.progress(
            f"task {finished}/{len(self.tasks)} done in {seconds:.1f}s: "
            f"acc {acc_row[t]:.2f}% on it, mean so far {sum(acc_row[:finished]) / finished:.2f}%"
        )
        counts = self.strategy.parameter_counts(finished)
        record = TaskRecord(finished, len(self.tasks), acc_row, val_row, seconds, loss, penalty, counts)
        record.stability = self.stability
        record.rounds = list(getattr(self.strategy, "round_stats", []))
        self.prune_flags += [r["flag"] for r in record.rounds if "flag" in r]
        return record

    def _run_sequential_task(self, t: int) -> float:
        task = self.tasks.tasks[t]
        for p in self.model.parameters():
            p.requires_grad_(False)
        trainable = self.strategy.trainable(t)
        for p in trainable:
            p.requires_grad_(True)
        opt = self._optimizer(trainable)
        epoch = 0
        # the last kept epoch's mean loss: a pruning round undone by `prune_tolerance` restores it with the weights
        last = {"loss": float("nan")}

        def fit(epochs: int, patience: int | None = None) -> None:
            nonlocal epoch
            stale = Patience(patience)
            for _ in range(epochs):
                last["loss"] = self._epoch(t, task.train, opt, epoch)
                epoch += 1
                if stale.exhausted(last["loss"]):
                    self.progress(f"  task {t + 1}: loss has not decreased for {patience} epochs; next phase")
                    break

        self.strategy.before_task(t)
        numbers = stability_numbers(self.strategy, self._lr(0)) if t > 0 else None
        if numbers:
            self.stability = max(numbers.values())
            for line in stability_message(t, numbers):
                self.progress(line)
        if not self.strategy.skip_initial_training(t):
            fit(self.cfg.optim.epochs, self.cfg.optim.patience)
        self.initial_phase = False
        self.strategy.after_training(t, self._phase(task, opt, fit, last))
        self.strategy.after_task(t, task)
        return last["loss"]

    def _phase(self, task, opt, fit, last: dict) -> Phase:
        """What the strategy's rounds may use: more epochs, the task's validation accuracy, the weights (saved
        and restored with the last kept epoch's loss, `last`)."""

        def score() -> float:
            was_training = self.model.training
            self.model.eval()
            value = accuracy(self.model, task.val, task.index)
            self.model.train(was_training)
            return value

        def save() -> dict:
            return {"weights": {k: v.clone() for k, v in self.model.state_dict().items()}, "loss": last["loss"]}

        def restore(saved: dict) -> None:
            self.model.load_state_dict(saved["weights"])
            last["loss"] = saved["loss"]

        return Phase(task, opt, fit, score=score, save=save, restore=restore, progress=self.progress)

    def _optimizer(self, params) -> torch.optim.Optimizer:
        o = self.cfg.optim
        if o.optimizer == "adam":
            return torch.optim.Adam(params, lr=o.lr)
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum)

    def _lr(self, epoch: int, batch: int = 0, batches: int = 1) -> float:
        return learning_rate(self.cfg.optim, self.task, epoch, self.initial_phase, batch, batches)

    def _epoch(self, t: int, split: Split, opt: torch.optim.Optimizer, epoch: int) -> float:
        """One pass over `split` in shuffled minibatches; returns the mean training loss."""
        lr = self._lr(epoch)
        for group in opt.param_groups:
            group["lr"] = lr
        head = self.model.heads[self.model.head_index(t)]
        strategy, bs = self.strategy, self.cfg.optim.batch_size
        order = torch.randperm(len(split), generator=self.shuffle, device=self.device)
        total = torch.zeros((), device=self.device)
        num_batches = -(-len(split) // bs)
        stepwise = per_step(self.cfg.optim)
        for batch, start in enumerate(range(0, len(split), bs)):
            if stepwise:
                lr = self._lr(epoch, batch, num_batches)
                for group in opt.param_groups:
                    group["lr"] = lr
            strategy.before_batch(t, batch, num_batches)
            x, y = split.batch(order[start : start + bs])
            features = self.model.features(x, t)
            loss = F.cross_entropy(head(features), y)
            extra = strategy.extra_loss(t, x, features)
            if extra is not None:
                loss = loss + extra
            opt.zero_grad(set_to_none=True)
            loss.backward()
            strategy.after_backward(t)
            opt.step()
            strategy.after_step(t, lr)
            total += loss.detach()
        return self._check_loss(t, epoch, float(total) / max(1, num_batches))

    def _fit_joint(self) -> float:
        """`joint`: one multi-head model on all tasks' data at once, each sample via its head."""
        data = JointData(self.tasks)
        opt = self._optimizer(self.model.parameters())
        bs, last = self.cfg.optim.batch_size, float("nan")
        stepwise = per_step(self.cfg.optim)
        for epoch in range(self.cfg.optim.epochs):
            lr = self._lr(epoch)
            for group in opt.param_groups:
                group["lr"] = lr
            order = torch.randperm(len(data), generator=self.shuffle, device=self.device)
            total = torch.zeros((), device=self.device)
            num_batches = -(-len(data) // bs)
            for batch, start in enumerate(range(0, len(data), bs)):
                if stepwise:
                    for group in opt.param_groups:
                        group["lr"] = self._lr(epoch, batch, num_batches)
                x, y, task_ids = data.batch(order[start : start + bs])
                loss = F.cross_entropy(data.logits(self.model, x, task_ids), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach()
            last = self._check_loss(0, epoch, float(total) / max(1, -(-len(data) // bs)))
        return last

    def _check_loss(self, t: int, epoch: int, loss: float) -> float:
        if not torch.isfinite(torch.tensor(loss)):
            raise TrainingDiverged(f"task {t + 1} epoch {epoch + 1}: training loss became {loss}")
        penalty = self.strategy.penalty() if self.cfg.strategy.regularised else 0.0
        if (why := runaway_penalty(self.strategy, loss, penalty)) is not None:
            raise TrainingDiverged(f"task {t + 1} epoch {epoch + 1}: {why}")
        self.progress(f"  task {t + 1} epoch {epoch + 1}: loss {loss:.4f} penalty {penalty:.4g}")
        return loss

    def evaluate(self, split: str) -> list[float]:
        """Accuracy (%) on every task's `split` ("test" or "val"), unseen tasks included."""
        was_training = self.model.training
        self.model.eval()
        row = [accuracy(self.model, getattr(task, split), task.index) for task in self.tasks.tasks]
        self.model.train(was_training)
        return row

    # ------------------------------------------------------- snapshots
    def snapshot(self) -> dict:
        """What the Section V analyses read at this task boundary (CPU tensors, torch.save-able).

        `params`: the trunk's weights and biases; `importance`: the method's accumulated Ω (absent
        for methods without one); `probe_importance`: the ANPyC measure of task 1 on the current
        weights, taken the same way for every method so importance-weighted changes compare across
        methods; `counts`: `Strategy.parameter_counts`.
        """
        params = self.model.trunk_parameters()
        out = {
            "task": self.next_task,
            "method": self.cfg.strategy.method,
            "counts": self.strategy.parameter_counts(self.next_task),
            "params": {n: p.detach().cpu().clone() for n, p in params.items()},
        }
        omega = self.strategy.importance()
        if omega is not None:
            out["importance"] = {n: t.detach().cpu().clone() for n, t in omega.items()}
        s, was_training = self.cfg.strategy, self.model.training
        needs_grad = {n: p.requires_grad for n, p in params.items()}
        self.model.eval()
        try:
            for p in params.values():
                p.requires_grad_(True)
            probe = anpyc_importance(self.model, self.tasks.tasks[0].train, 0, s.importance_batch, s.importance_samples)
        finally:
            for n, p in params.items():
                p.requires_grad_(needs_grad[n])
            self.model.train(was_training)
        out["probe_importance"] = {n: t.cpu() for n, t in probe.items()}
        return out

    # ----------------------------------------------------------- result
    def result(self) -> RunResult:
        """The metrics of the finished run (SPEC §6)."""
        if self.next_task < len(self.tasks):
            raise RuntimeError(f"run unfinished: {self.next_task}/{len(self.tasks)} tasks done")
        ref = self.joint_reference or {}
        return RunResult(
            config=self.cfg.model_dump(mode="json"),
            run_id=self.cfg.run_id(),
            fingerprint=fingerprint(self.cfg, __version__),
            metrics=summarize(self.acc_matrix, ref.get("test")),
            val_metrics=summarize(self.val_acc_matrix, ref.get("val")),
            acc_matrix=self.acc_matrix,
            val_acc_matrix=self.val_acc_matrix,
            seconds=sum(self.task_seconds),
            task_seconds=self.task_seconds,
            joint_reference=self.joint_reference,
            prune_flags=list(self.prune_flags),
        )
