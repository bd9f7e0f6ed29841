"""Petridish as a search strategy: `suggest(trial_id)` / `on_trial_complete(...)`.

The strategy decides *what* to train next and keeps the pool; it knows nothing of Ray,
torch or files. Its whole state is plain data (`state_dict`), so the runner can journal
every decision and a resumed run continues exactly where it stopped.

Order of work: every seed model first (cheapest first, so the pool spreads over the cost
axis early), then children of parents sampled from the ε-band. A child can be suggested
as soon as one model is in the pool, so a large cluster is not idle while the last, most
expensive seeds train.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Union

import numpy as np

from petrinas.search.pool import Pool, PoolEntry

SEED, SEARCH = "seed", "search"


class Finished:
    """`suggest` returns FINISHED when no more trials will ever be suggested."""

    def __repr__(self) -> str:
        return "FINISHED"


FINISHED = Finished()


@dataclass(frozen=True)
class JobSpec:
    """What to train: a seed of a macro shape, or a child of a pool model."""
    stage: str                                  # seed | search
    macro: tuple[int, int, int] | None = None   # (cells, reductions, nodes), seeds only
    parent_id: str | None = None                # search only

    def to_dict(self) -> dict:
        return {"stage": self.stage, "macro": list(self.macro) if self.macro else None,
                "parent_id": self.parent_id}

    @classmethod
    def from_dict(cls, data: dict) -> "JobSpec":
        macro = data.get("macro")
        return cls(stage=data["stage"], macro=tuple(macro) if macro else None,
                   parent_id=data.get("parent_id"))


Suggestion = Union[JobSpec, None, Finished]


@dataclass(frozen=True)
class StopRules:
    max_trials: int
    max_pool: int
    max_macs: float = 0.0       # 0: no limit
    eps: float = 0.025


class PetridishStrategy:
    def __init__(self, seed_macros: Sequence[tuple[int, int, int]], rules: StopRules,
                 seed: int = 0):
        """`seed_macros` are (cells, reductions, nodes) triples, trained in this order."""
        self.seed_macros = [tuple(m) for m in seed_macros]
        self.rules = rules
        self.pool = Pool()
        self.rng = np.random.default_rng(seed)
        self.in_flight: dict[str, JobSpec] = {}
        self.next_seed = 0
        self.submitted = 0
        self.failed = 0
        self.stop_reason: str | None = None

    # -------------------------------------------------------------------- decisions
    def suggest(self, trial_id: str) -> Suggestion:
        """A job for `trial_id`, None if nothing can start now, or FINISHED."""
        if self.is_finished():
            return FINISHED
        if self.stop_reason or self.submitted >= self.rules.max_trials:
            return None  # jobs still in flight; wait for them
        if self.next_seed < len(self.seed_macros):
            spec = JobSpec(stage=SEED, macro=self.seed_macros[self.next_seed])
            self.next_seed += 1
        elif len(self.pool):
            spec = JobSpec(stage=SEARCH,
                           parent_id=self.pool.sample_parent(self.rng, self.rules.eps))
        else:
            return None  # seeds still training
        self.in_flight[trial_id] = spec
        self.submitted += 1
        return spec

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: str | None = None) -> None:
        """Record a finished trial: `result` holds the pool fields, or `error` says why
        it failed (a failed trial is not retried: its id is spent)."""
        spec = self.in_flight.pop(trial_id, None)
        if spec is None:
            raise KeyError(f"trial {trial_id} is not in flight")
        if error is not None or result is None:
            self.failed += 1
        else:
            self.pool.add(_entry(trial_id, spec, result))
            if self.rules.max_macs and result["macs"] > self.rules.max_macs:
                self.stop_reason = "max_macs"
            elif len(self.pool) >= self.rules.max_pool:
                self.stop_reason = "max_pool"
        if self._no_seed_can_succeed():
            self.stop_reason = "all seeds failed"

    def on_trial_cancelled(self, trial_id: str) -> None:
        """A trial stopped by the runner (budget or shutdown): its id stays spent."""
        self.in_flight.pop(trial_id, None)

    def is_finished(self) -> bool:
        if self.in_flight:
            return False
        return bool(self.stop_reason) or self.submitted >= self.rules.max_trials

    def finish_reason(self) -> str:
        if self.stop_reason:
            return self.stop_reason
        return "max_trials" if self.submitted >= self.rules.max_trials else ""

    def _no_seed_can_succeed(self) -> bool:
        return (not len(self.pool) and not self.in_flight
                and self.next_seed >= len(self.seed_macros))

    # ---------------------------------------------------------------- persistence
    def restore_submission(self, trial_id: str, spec: JobSpec, rng_state: dict) -> None:
        """Replay a journaled suggest(): the same bookkeeping, no new random draw."""
        if spec.stage == SEED:
            self.next_seed += 1
        elif spec.parent_id in self.pool:
            self.pool[spec.parent_id].sampled += 1
        self.in_flight[trial_id] = spec
        self.submitted += 1
        self.rng.bit_generator.state = rng_state

    def rng_state(self) -> dict:
        return self.rng.bit_generator.state

    def state_dict(self) -> dict[str, Any]:
        return {"pool": self.pool.state_dict(), "rng": self.rng.bit_generator.state,
                "in_flight": {t: s.to_dict() for t, s in self.in_flight.items()},
                "next_seed": self.next_seed, "submitted": self.submitted,
                "failed": self.failed, "stop_reason": self.stop_reason}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pool.load_state_dict(state["pool"])
        self.rng.bit_generator.state = state["rng"]
        self.in_flight = {t: JobSpec.from_dict(s) for t, s in state["in_flight"].items()}
        self.next_seed = state["next_seed"]
        self.submitted = state["submitted"]
        self.failed = state["failed"]
        self.stop_reason = state["stop_reason"]


def _entry(trial_id: str, spec: JobSpec, result: dict) -> PoolEntry:
    return PoolEntry(trial_id=trial_id, parent_id=spec.parent_id, stage=spec.stage,
                     macs=int(result["macs"]), params=int(result["params"]),
                     val_top1=float(result["val_top1"]),
                     test_top1=_optional_float(result.get("test_top1")),
                     cells=int(result["cells"]), reductions=int(result["reductions"]),
                     nodes=int(result["nodes"]))


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def strategy_from_config(config) -> PetridishStrategy:
    """The strategy for a `Config` (seed macros in the config's ranges, its stop rules)."""
    from petrinas.config import seed_macros

    macros = [(c, r, n) for r, c, n in seed_macros(config)]
    macros.sort(key=lambda m: (m[0] * (m[2] + 1), m))  # roughly cheapest first
    search = config.search
    rules = StopRules(max_trials=search.max_trials, max_pool=search.max_pool,
                      max_macs=search.max_macs, eps=search.convex_hull_eps)
    return PetridishStrategy(macros, rules, seed=config.seed)


__all__ = ["PetridishStrategy", "JobSpec", "StopRules", "FINISHED", "Finished", "SEED",
           "SEARCH", "strategy_from_config"]
