"""ASHA for the members of packs: one set of rungs for the whole study, asked by every pack after each task.

Tune's ASHAScheduler stops whole Tune trials, but a pack is one Tune trial holding many configurations.
Here the same asynchronous successive halving (Li et al. 2020, as Ray implements it: rungs at
grace·rf^k tasks, a result below the (1 − 1/rf) quantile of its rung stops) decides per member; a
stopped member freezes inside its pack and the pack ends when no member trains. The rungs live in a
named Ray actor on the driver's node and are saved to the study's storage after every decision, so a
resumed study keeps them, and a pack that replays a task after a crash gets its first answer again.
"""

from __future__ import annotations

import json
import math
from typing import Any

import ray

RUNGS_FILE = "member_asha.json"


class MemberRungs:
    """The rungs of one study: recorded objective values per milestone, and every decision made."""

    def __init__(self, max_t: int, grace_period: int, reduction_factor: float, mode: str) -> None:
        self.mode, self.rf = mode, reduction_factor
        count = int(math.log(max_t / grace_period, reduction_factor)) + 1 if max_t > grace_period else 0
        milestones = [grace_period * reduction_factor**k for k in range(count)]
        self.milestones = sorted({int(m) for m in milestones if m < max_t}, reverse=True)
        self.recorded: dict[int, dict[str, float]] = {m: {} for m in self.milestones}
        self.decisions: dict[str, bool] = {}

    def decide(self, member: str, task: int, value: float) -> bool:
        """True when `member` (after `task` tasks, objective `value`) goes on; False: stop it here."""
        key = f"{member}@{task}"
        if key in self.decisions:  # a replayed task (a pack resumed from an older checkpoint)
            return self.decisions[key]
        go_on = True
        if task in self.recorded:
            rung = self.recorded[task]
            signed = value if self.mode == "max" else -value
            if not math.isfinite(signed):
                go_on = False  # not recorded: it would move the cutoff for everyone else
            else:
                if rung:
                    go_on = signed >= _quantile(sorted(rung.values()), 1 - 1 / self.rf)
                rung[member] = signed
        self.decisions[key] = go_on
        return go_on

    def state(self) -> dict[str, Any]:
        """What is saved to the study's storage."""
        return {"recorded": {str(m): r for m, r in self.recorded.items()}, "decisions": self.decisions}

    def load(self, state: dict[str, Any]) -> None:
        """Restore a saved `state()` (rungs of milestones this study still has)."""
        for m, rung in state.get("recorded", {}).items():
            if int(m) in self.recorded:
                self.recorded[int(m)].update({k: float(v) for k, v in rung.items()})
        self.decisions.update(state.get("decisions", {}))


def _quantile(values: list[float], q: float) -> float:
    """Linear-interpolated quantile of sorted values (numpy's default rule, as Ray's ASHA uses)."""
    position = q * (len(values) - 1)
    low = math.floor(position)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (position - low)


@ray.remote(num_cpus=0)
class MemberRungsActor:
    """`MemberRungs` shared by every pack of a study, persisted to its storage after each decision."""

    def __init__(self, store_location: str, max_t: int, grace_period: int, reduction_factor: float, mode: str):
        from sweeper.storage.store import StudyStore

        self.store = StudyStore(store_location)
        self.rungs = MemberRungs(max_t, grace_period, reduction_factor, mode)
        if self.store.exists(RUNGS_FILE):
            self.rungs.load(json.loads(self.store.read_text(RUNGS_FILE)))

    def decide(self, entries: list[tuple[str, int, float]]) -> list[bool]:
        """Decisions for several members at once (one pack's task), saved before they are returned."""
        out = [self.rungs.decide(member, task, value) for member, task, value in entries]
        self.store.write_text(RUNGS_FILE, json.dumps(self.rungs.state()))
        return out


def actor_name(study: str) -> str:
    """The named actor of a study's member rungs."""
    return f"anpyc-member-asha-{study}"


def start_member_rungs(spec, max_tasks: int):
    """Create (or find) the study's rungs actor on the driver's node; packs find it by name."""
    return MemberRungsActor.options(name=actor_name(spec.name), get_if_exists=True).remote(
        spec.tune_storage,
        max_tasks,
        spec.scheduler.grace_period,
        spec.scheduler.reduction_factor,
        spec.objectives[0].mode,
    )
