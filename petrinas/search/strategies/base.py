"""What the search strategies share: the pool, the random generator, the trials in flight."""

from __future__ import annotations

from typing import Any

import numpy as np
from overrides import overrides

from petrinas.search.pool import Pool, entry_from_row
from petrinas.search.strategy import JobSpec, Strategy


class PoolStrategy(Strategy):
    """Keeps every trained model in a `Pool` on the chosen cost axis. A result whose
    status is "duplicate" (its architecture was trained already) is counted, not pooled.
    Subclasses decide what to suggest; their extra state goes through `_extra_state`."""

    def __init__(self, *, seed: int = 0, cost_key: str = "macs"):
        self.pool = Pool()
        self.cost_key = cost_key
        self.rng = np.random.default_rng(seed)
        self._in_flight: dict[str, JobSpec] = {}
        self.duplicates = 0
        self.failed = 0

    @property
    @overrides
    def in_flight(self) -> dict[str, JobSpec]:
        return self._in_flight

    def _start(self, trial_id: str, spec: JobSpec) -> JobSpec:
        self._in_flight[trial_id] = spec
        return spec

    @overrides
    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: str | None = None) -> None:
        spec = self._in_flight.pop(trial_id, None)
        if spec is None:
            raise KeyError(f"trial {trial_id} is not in flight")
        if error is not None or result is None:
            self.failed += 1
        elif result.get("status") == "duplicate":
            self.duplicates += 1
        else:
            self.pool.add(entry_from_row({**result, "trial_id": trial_id}, self.cost_key))

    @overrides
    def on_trial_cancelled(self, trial_id: str) -> None:
        self._in_flight.pop(trial_id, None)

    @overrides
    def on_trial_lost(self, trial_id: str) -> None:
        """The pool is rebuilt without it (rare: the pool only grows otherwise)."""
        if trial_id in self.pool:
            state = self.pool.state_dict()
            state["entries"] = [e for e in state["entries"] if e["trial_id"] != trial_id]
            self.pool.load_state_dict(state)

    @overrides
    def restore_submission(self, trial_id: str, spec: JobSpec, rng_state: dict) -> None:
        self._replay(spec)
        self._in_flight[trial_id] = spec
        self.rng.bit_generator.state = rng_state

    def _replay(self, spec: JobSpec) -> None:
        """The bookkeeping `suggest` did for `spec`, without its random draws."""

    @overrides
    def rng_state(self) -> dict:
        return self.rng.bit_generator.state

    @overrides
    def state_dict(self) -> dict[str, Any]:
        return {"pool": self.pool.state_dict(), "rng": self.rng.bit_generator.state,
                "in_flight": {t: s.to_dict() for t, s in self._in_flight.items()},
                "duplicates": self.duplicates, "failed": self.failed,
                **self._extra_state()}

    @overrides
    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pool.load_state_dict(state["pool"])
        self.rng.bit_generator.state = state["rng"]
        self._in_flight = {t: JobSpec.from_dict(s) for t, s in state["in_flight"].items()}
        self.duplicates = state["duplicates"]
        self.failed = state["failed"]
        self._load_extra_state(state)

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        pass
