"""Train K run configs with one pack signature at once: one batched step moves every member.

    pack = PackedTrainer(cfgs)                  # K members, each a sequential `Trainer` whose
    for records in pack.run():                  # weights live in the pack's stacked tensors
        pack.save_checkpoint(path)              # one record (or None once diverged) per member
    results = pack.results()                    # RunResult or TrainingDiverged per member

Each member draws its minibatch order, dropout masks, permutations and validation split from
the generators its own sequential run would use, and its strategy's hooks (penalty gradient,
free-weight masks, importance, pruning rounds) run on views of the pack's storage, so a member
follows its sequential run: bit for bit on CPU for a pack of one, to rounding otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.nn import functional as F

from anpyc_core.config import ConfigError, RunConfig
from anpyc_core.data import RawDataset, build_tasks, load_data
from anpyc_core.data.tasks import as_device_tensor
from anpyc_core.packing.batches import PackBatches
from anpyc_core.packing.hooks import StackedPenalty
from anpyc_core.packing.optim import StackedSGD
from anpyc_core.packing.signature import pack_refusal, pack_signature
from anpyc_core.packing.stacked import StackedMLP
from anpyc_core.run_state import (
    Patience,
    Progress,
    RunResult,
    TaskRecord,
    TrainingDiverged,
    derive_seed,
    resolve_device,
    save_atomically,
)
from anpyc_core.schedule import DIVERGENCE_LIMIT, learning_rate, per_step, runaway_penalty, stability_numbers
from anpyc_core.strategies import Strategy
from anpyc_core.strategies.base import RoundGuard
from anpyc_core.trainer import Trainer

PACK_FORMAT = 1


class MemberStopped(RuntimeError):
    """A member stopped early (by a scheduler such as ASHA) after `tasks_done` tasks."""

    def __init__(self, reason: str, tasks_done: int) -> None:
        super().__init__(reason)
        self.tasks_done = tasks_done


def _overrides(strategy: Strategy, hook: str) -> bool:
    return getattr(type(strategy), hook) is not getattr(Strategy, hook)


class PackedTrainer:
    """K continual-learning runs that share a pack signature, trained together on one device."""

    def __init__(
        self,
        cfgs: list[RunConfig],
        progress: Progress | None = None,
        raw: RawDataset | dict[str, RawDataset] | None = None,
        joint_references: list[dict | None] | None = None,
        vectorised: bool = True,
    ) -> None:
        """`vectorised=False` runs the per-step hooks and minibatch gathers member by member (the same
        numbers, slower; bench/packed_steps.py measures the difference)."""
        if not cfgs:
            raise ConfigError("pack: needs at least one run config")
        for cfg in cfgs:
            refusal = pack_refusal(cfg)
            if refusal:
                raise ConfigError(refusal)
        signature = pack_signature(cfgs[0])
        for i, cfg in enumerate(cfgs):
            if pack_signature(cfg) != signature:
                raise ConfigError(f"pack: member {i} differs from member 0 in more than the member fields")
        self.signature = signature
        self.cfgs = cfgs
        self.device = resolve_device(cfgs[0].device)
        self.progress = progress or (lambda msg: None)
        data = cfgs[0].data
        raw = load_data(data) if raw is None else raw if isinstance(raw, dict) else {raw.name: raw}
        images = {  # held once for the whole pack
            name: (as_device_tensor(r.x_train, self.device), as_device_tensor(r.x_test, self.device))
            for name, r in raw.items()
        }
        references = joint_references or [None] * len(cfgs)
        self.members = [
            Trainer(cfg, tasks=build_tasks(cfg.data, raw, cfg.seed, self.device, images=images), joint_reference=ref)
            for cfg, ref in zip(cfgs, references, strict=True)
        ]
        self.stack = StackedMLP([m.model for m in self.members])
        for member in self.members:  # strategies that cached the parameters now see the views
            if hasattr(member.strategy, "params"):
                member.strategy.params = member.model.trunk_parameters()
        #: the regularised penalty and masks for all members at once (None: per-member hooks)
        self.vectorised = vectorised
        stacked = vectorised and StackedPenalty.covers(self.members)
        self.penalty = StackedPenalty(self.members, self.stack.slot) if stacked else None
        self.diverged: list[str | None] = [None] * len(cfgs)
        self.stopped: list[str | None] = [None] * len(cfgs)  # early-stopped (e.g. by ASHA): frozen
        self.next_task = 0
        self.num_tasks = len(self.members[0].tasks)

    @property
    def size(self) -> int:
        """Number of members K."""
        return len(self.members)

    def live(self) -> list[int]:
        """Indices of the members still training (neither diverged nor stopped)."""
        return [k for k in range(self.size) if self.diverged[k] is None and self.stopped[k] is None]

    def stop(self, k: int, reason: str) -> None:
        """Freeze member k after its last finished task (its record so far stays its result)."""
        if self.diverged[k] is None and self.stopped[k] is None:
            self.stopped[k] = reason

    # ----------------------------------------------------------- the loop
    def run(self) -> Iterator[list[TaskRecord | None]]:
        """Train the remaining tasks, yielding one record per member (None once diverged or stopped)
        after each; ends early when no member is left training."""
        while self.next_task < self.num_tasks and self.live():
            yield self.run_task(self.next_task)

    def run_task(self, t: int) -> list[TaskRecord | None]:
        """Task t for every live member: initial training, pruning rounds, evaluation."""
        start = time.perf_counter()
        live = self.live()
        self.task, self.initial_phase = t, True
        self._begin_task(t, live)
        opt = self._optimizer(t)
        epochs = dict.fromkeys(live, 0)
        self.last_loss = dict.fromkeys(live, float("nan"))
        self.stability: dict[int, float] = {}
        for k in live:
            self.members[k].strategy.before_task(t)
            numbers = stability_numbers(self.members[k].strategy, self._lr(k, 0)) if t > 0 else None
            if numbers:
                self.stability[k] = max(numbers.values())
        unstable = [k for k, v in self.stability.items() if v > DIVERGENCE_LIMIT]
        if unstable:
            self.progress(
                f"warning: task {t + 1}: members {unstable} have lr·2λ·max Ω above {DIVERGENCE_LIMIT:g} "
                "(their penalty step will diverge)"
            )
        initial = [k for k in live if not self.members[k].strategy.skip_initial_training(t)]
        self._fit(t, initial, self.cfgs[0].optim.epochs, opt, epochs, self.cfgs[0].optim.patience)
        self.initial_phase = False
        rounds = {k: self.members[k].strategy.pruning_rounds(t) for k in self.live()}
        for k in rounds:
            note = self.members[k].strategy.rounds_note(t)
            if note:
                self.progress(f"member {k}: {note}")
        guards = {k: self._round_guard(k, t) for k, v in rounds.items() if v}
        for r in range(max((len(v) for v in rounds.values()), default=0)):
            active = [k for k in self.live() if len(rounds[k]) > r]
            for k in active:
                member = self.members[k]
                view = opt.member_view(k, self.stack.slot)
                member.strategy.begin_round(t, r, rounds[k][r], member.tasks.tasks[t], view)
            self._fit(t, active, self.cfgs[0].optim.retrain_epochs, opt, epochs)
            for k in active:
                if self.diverged[k] is None:
                    guards[k].keep(t, r)  # accuracy per round, and the warning line (no undo in a pack)
        for k in self.live():
            self.members[k].strategy.end_rounds(t)
            self.members[k].strategy.after_task(t, self.members[k].tasks.tasks[t])
        return self._finish_task(t, time.perf_counter() - start)

    def _round_guard(self, k: int, t: int) -> RoundGuard:
        """Member k's pruning-round guard for task t: measures and reports, as its sequential run does."""
        member = self.members[k]
        phase = member._phase(member.tasks.tasks[t], None, None, {"loss": float("nan")})  # no undo: no loss kept
        phase.progress = lambda msg: self.progress(f"member {k}: {msg}")
        return RoundGuard(member.strategy, phase, None)

    def _begin_task(self, t: int, live: list[int]) -> None:
        """Per-member generators of task t and the sequential run's requires_grad flags."""
        self.shuffle, self.dropout_gen = {}, {}
        for k in live:
            member, seed = self.members[k], derive_seed(self.cfgs[k].seed, t)
            self.shuffle[k] = torch.Generator(device=self.device).manual_seed(seed)
            self.dropout_gen[k] = torch.Generator(device=self.device).manual_seed(seed)
            member.model.train()
            for p in member.model.parameters():
                p.requires_grad_(False)
            for p in member.strategy.trainable(t):
                p.requires_grad_(True)

    def _optimizer(self, t: int) -> StackedSGD:
        """A fresh per-member SGD over the stacks that task t trains (the same for every member)."""
        trained = {id(self.stack.slot(p)[0]) for p in self.members[0].strategy.trainable(t)}
        stacks = []
        for s in self.stack.tensors():
            s.requires_grad_(id(s) in trained)
            if id(s) in trained:
                stacks.append(s)
        self.grad_views = [[(p, *self.stack.slot(p)) for p in member.strategy.trainable(t)] for member in self.members]
        return StackedSGD(stacks, [cfg.optim.momentum for cfg in self.cfgs])

    def _lr(self, k: int, epoch: int, batch: int = 0, batches: int = 1) -> float:
        return learning_rate(self.cfgs[k].optim, self.task, epoch, self.initial_phase, batch, batches)

    def _fit(
        self,
        t: int,
        members: list[int],
        epochs: int,
        opt: StackedSGD,
        counters: dict[int, int],
        patience: int | None = None,
    ) -> None:
        """`epochs` passes for `members` (each ends early by its own `patience`, as its sequential run);
        a member whose loss is not finite stops as diverged."""
        stale = {k: Patience(patience) for k in members}
        waiting = set(members)
        if self.penalty is not None:
            self.penalty.refresh()  # this phase's λ·Ω, θ* and round masks
        for _ in range(epochs):
            active = [k for k in members if self.diverged[k] is None and k in waiting]
            if not active:
                return
            losses = self._epoch(t, active, opt, counters)
            for k, loss in zip(active, losses, strict=True):
                counters[k] += 1
                self.last_loss[k] = loss
                if not torch.isfinite(torch.tensor(loss)):
                    self.diverged[k] = f"task {t + 1} epoch {counters[k]}: training loss became {loss}"
                elif (why := runaway_penalty(self.members[k].strategy, loss)) is not None:
                    self.diverged[k] = f"task {t + 1} epoch {counters[k]}: {why}"
                elif stale[k].exhausted(loss):
                    waiting.discard(k)
            finite = [v for v in losses if v == v and abs(v) != float("inf")]
            mean = sum(finite) / len(finite) if finite else float("nan")
            self.progress(f"  task {t + 1}: epoch of {len(active)} members, mean loss {mean:.4f}")

    def _epoch(self, t: int, active: list[int], opt: StackedSGD, counters: dict[int, int]) -> list[float]:
        """One pass of every active member over its own shuffled minibatches; their mean losses."""
        members = [self.members[k] for k in active]
        index = None if len(active) == self.size else torch.tensor(active, device=self.device)
        lrs = [self._lr(k, counters[k]) for k in active]
        splits = [m.tasks.tasks[t].train for m in members]
        n, bs = len(splits[0]), self.cfgs[0].optim.batch_size
        orders = [torch.randperm(n, generator=self.shuffle[k], device=self.device) for k in active]
        gens = [self.dropout_gen[k] for k in active]
        backward_hooks = [] if self.penalty else [m for m in members if _overrides(m.strategy, "after_backward")]
        hooked = [_overrides(m.strategy, "after_step") for m in members]
        step_hooks = [(m, lr) for m, lr, h in zip(members, lrs, hooked, strict=True) if h]
        total = torch.zeros(len(active), device=self.device)
        num_batches = -(-n // bs)
        batches = PackBatches(splits, orders, stacked=self.vectorised)
        stepwise = any(per_step(self.cfgs[k].optim) for k in active)
        for batch, start in enumerate(range(0, n, bs)):
            if stepwise:
                lrs = [self._lr(k, counters[k], batch, num_batches) for k in active]
                step_hooks = [(m, lr) for m, lr, h in zip(members, lrs, hooked, strict=True) if h]
            x, y = batches.batch(start, bs)
            logits = self.stack.forward(x, t, index, gens)
            if len(active) == 1:
                per_member = F.cross_entropy(logits[0], y[0]).unsqueeze(0)
            else:
                ce = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
                per_member = ce.view(len(active), -1).mean(dim=1)
            opt.zero_grad()
            per_member.sum().backward()
            if self.penalty is not None:
                self.penalty.after_backward()
            if backward_hooks:
                self._expose_grads(active)
                for m in backward_hooks:
                    m.strategy.after_backward(t)
            opt.step(active, lrs)
            for m, lr in step_hooks:
                m.strategy.after_step(t, lr)
            total += per_member.detach()
        return [float(v) / max(1, num_batches) for v in total]

    def _expose_grads(self, active: list[int]) -> None:
        """Give each active member's parameters their rows of the stacked gradients (views)."""
        for k in active:
            for param, stack, slot in self.grad_views[k]:
                param.grad = stack.grad[slot]

    def _finish_task(self, t: int, seconds: float) -> list[TaskRecord | None]:
        """Evaluate every live member and append its accuracy rows; seconds are shared equally."""
        live = self.live()
        share = seconds / max(1, len(live))
        records: list[TaskRecord | None] = [None] * self.size
        for k in live:
            m = self.members[k]
            m.model.eval()
            acc_row, val_row = m.evaluate("test"), m.evaluate("val")
            m.acc_matrix.append(acc_row)
            m.val_acc_matrix.append(val_row)
            m.task_seconds.append(share)
            m.next_task = t + 1
            counts = m.strategy.parameter_counts(t + 1)
            loss, penalty = self.last_loss[k], m.strategy.penalty()
            records[k] = TaskRecord(t + 1, self.num_tasks, acc_row, val_row, share, loss, penalty, counts)
            records[k].stability = self.stability.get(k)
            records[k].rounds = list(getattr(m.strategy, "round_stats", []))
            m.prune_flags += [r["flag"] for r in records[k].rounds if "flag" in r]
        self.next_task = t + 1
        done = [r.acc_row[t] for r in records if r is not None]
        mean = sum(done) / len(done) if done else float("nan")
        self.progress(
            f"task {t + 1}/{self.num_tasks} done in {seconds:.1f}s for {len(live)} members "
            f"({self.size - len(live)} diverged or stopped): mean acc {mean:.2f}% on it"
        )
        return records

    # ------------------------------------------------------ checkpoints
    def checkpoint_state(self) -> dict:
        """Every member's task-boundary checkpoint plus which members diverged."""
        return {
            "format": PACK_FORMAT,
            "signature": self.signature,
            "next_task": self.next_task,
            "diverged": list(self.diverged),
            "stopped": list(self.stopped),
            "members": [m.checkpoint_state() for m in self.members],
        }

    def load_checkpoint_state(self, state: dict) -> None:
        """Restore a `checkpoint_state()` of a pack with the same members in the same order."""
        if state.get("format") != PACK_FORMAT:
            raise ValueError(f"pack checkpoint format {state.get('format')} is not {PACK_FORMAT}")
        if len(state["members"]) != self.size:
            raise ValueError(f"pack checkpoint holds {len(state['members'])} members, this pack has {self.size}")
        for member, member_state in zip(self.members, state["members"], strict=True):
            member.load_checkpoint_state(member_state)
        self.diverged = list(state["diverged"])
        self.stopped = list(state.get("stopped", [None] * self.size))
        self.next_task = state["next_task"]

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write the pack checkpoint atomically (temp file + rename)."""
        return save_atomically(self.checkpoint_state(), path)

    def load_checkpoint(self, path: str | Path) -> None:
        """Resume from a file written by `save_checkpoint`."""
        self.load_checkpoint_state(torch.load(path, map_location=self.device, weights_only=True))

    # ----------------------------------------------------------- results
    def results(self) -> list[RunResult | TrainingDiverged | MemberStopped]:
        """Each member's RunResult (a stopped member's covers its finished tasks), or the TrainingDiverged
        saying where it diverged."""
        out: list[RunResult | TrainingDiverged | MemberStopped] = []
        for m, diverged, stopped in zip(self.members, self.diverged, self.stopped, strict=True):
            if diverged is not None:
                out.append(TrainingDiverged(diverged))
            elif stopped is not None:
                out.append(MemberStopped(stopped, m.next_task))
            else:
                out.append(m.result())
        return out


def run_pack(
    cfgs: list[RunConfig], progress: Progress | None = None
) -> list[RunResult | TrainingDiverged | MemberStopped]:
    """Train `cfgs` as one pack to the end and return each member's outcome."""
    pack = PackedTrainer(cfgs, progress=progress)
    for _ in pack.run():
        pass
    return pack.results()
