"""When a run stops, and what happens to the trials still running: the one place for it.

Every time a trial ends, the loop asks `Budget.verdict` whether to keep submitting:

* SUBMIT: fill every free slot with the strategy's suggestions.
* DRAIN: submit nothing more; the running trials finish into the pool, so no paid work
  is thrown away. The trial budget (`max_trials`, which counts every suggested trial,
  failed ones and duplicates too, and is never exceeded) and the pool budget
  (`max_pool` trained models) drain, and so does the compute budget
  (`max_compute_hours`: the trials' device seconds, summed), the one to give every
  strategy of a comparison: equal compute, whatever a trial costs.
* STOP: the time budget (`max_hours`, driver time summed over every session) is hard:
  the running trials are cancelled on Ray and stay "in flight" in the journal, exactly
  as after a kill or Ctrl-C, so resuming with a larger budget trains them under their
  ids. Nothing they computed had been kept yet, so nothing kept is lost.

Cost budgets (`search.max_macs`) do not stop a search: they decide which models may be
grown (see strategies/petridish.py). A strategy can also run out of things to suggest
(all seeds failed, say); the loop then drains and reports the strategy's reason.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Action(enum.Enum):
    SUBMIT = "submit"
    DRAIN = "drain"
    STOP = "stop"


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str = ""   # the budget that ended the run ('' while submitting)


@dataclass(frozen=True)
class Budget:
    max_trials: int
    max_seconds: float = float("inf")
    max_pool: int = 0          # 0: no limit
    max_compute_s: float = 0.0  # 0: no limit

    def verdict(self, *, trials: int, pooled: int, elapsed: float,
                compute: float = 0.0) -> Verdict:
        """What to do now that `trials` have been suggested, `pooled` of them are in the
        pool, `elapsed` seconds of the time budget are spent and the finished trials
        used `compute` device seconds."""
        if elapsed >= self.max_seconds:
            return Verdict(Action.STOP, "max_hours")
        if trials >= self.max_trials:
            return Verdict(Action.DRAIN, "max_trials")
        if self.max_pool and pooled >= self.max_pool:
            return Verdict(Action.DRAIN, "max_pool")
        if self.max_compute_s and compute >= self.max_compute_s:
            return Verdict(Action.DRAIN, "max_compute_hours")
        return Verdict(Action.SUBMIT)

    @classmethod
    def from_config(cls, config) -> "Budget":
        search = config.search
        return cls(max_trials=search.max_trials, max_seconds=search.max_hours * 3600,
                   max_pool=search.max_pool, max_compute_s=search.max_compute_hours * 3600)
