"""What a search strategy is: `suggest(trial_id)` / `on_trial_complete(trial_id, ...)`.

A strategy decides *what* to train next and keeps what it needs to decide; it knows
nothing of Ray, torch, files or budgets (the loop asks `stopping.py` about those). Its
whole state is plain data (`state_dict`), and every suggestion is journaled with the
strategy's RNG state, so a resumed run replays the journal into a fresh strategy
(`restore_submission`, `on_trial_complete`) and continues exactly where it stopped.

Strategies register by name (`@register("petridish")`); the config key `search.strategy`
picks one (`strategy_from_config`). Each lives in one file under `strategies/`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from petrinas.errors import ConfigError
from petrinas.search.kinds import EVAL, RANDOM, SEARCH, SEED


class Finished:
    """`suggest` returns FINISHED when no more trials will ever be suggested."""

    def __repr__(self) -> str:
        return "FINISHED"


FINISHED = Finished()


@dataclass(frozen=True)
class JobSpec:
    """What one trial trains, as plain data (it is journaled and sent to the job).
    `stage` names its kind of job (search/kinds.py); the built-in ones read:

    seed:   a seed model of `macro` = (cells, reductions, nodes);
    search: a child of `parent_id`, its finalized pairs chosen by `selection`
            ("alpha": top-k |alpha|; "random": k uniformly random non-`none` pairs);
    random: a model of `macro` whose cells are `cells` ({"normal"/"reduce": nodes, each a
            list of [input, op] edges}), trained from scratch;
    eval:   the eval-stage model of gallery model `parent_id`.
    """
    stage: str
    macro: tuple[int, int, int] | None = None
    parent_id: str | None = None
    selection: str = "alpha"
    cells: dict | None = field(default=None, compare=True, hash=False)

    def to_dict(self) -> dict:
        out = {"stage": self.stage, "macro": list(self.macro) if self.macro else None,
               "parent_id": self.parent_id}
        if self.selection != "alpha":
            out["selection"] = self.selection
        if self.cells is not None:
            out["cells"] = self.cells
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "JobSpec":
        macro = data.get("macro")
        return cls(stage=data["stage"], macro=tuple(macro) if macro else None,
                   parent_id=data.get("parent_id"),
                   selection=data.get("selection", "alpha"), cells=data.get("cells"))


Suggestion = Union[JobSpec, None, Finished]


class Strategy(ABC):
    """The interface the loop and the store are written against; nothing more.

    The loop asks for a job per free slot (`suggest`), reports each trial's end
    (`on_trial_complete` / `on_trial_cancelled`) and a model whose files are gone
    (`on_trial_lost`), and stops when `is_finished`; the store journals `rng_state()`
    with every suggestion and replays it (`restore_submission`).
    """

    @abstractmethod
    def suggest(self, trial_id: str) -> Suggestion:
        """A job for `trial_id`; None if nothing can start now (wait for a result);
        FINISHED if nothing ever will."""

    @abstractmethod
    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: str | None = None) -> None:
        """A suggested trial ended: `result` is its pool row (status "ok", or
        "duplicate" of a model already trained), or `error` says why it failed."""

    @abstractmethod
    def on_trial_cancelled(self, trial_id: str) -> None:
        """A suggested trial was stopped by the loop (time budget, interrupt)."""

    @abstractmethod
    def on_trial_lost(self, trial_id: str) -> None:
        """A trained model's files are gone: never build on it again."""

    @abstractmethod
    def restore_submission(self, trial_id: str, spec: JobSpec, rng_state: dict) -> None:
        """Replay a journaled `suggest`: the same bookkeeping, no new random draw."""

    @abstractmethod
    def rng_state(self) -> dict:
        """The state of the strategy's random generator (journaled with each suggestion)."""

    @property
    @abstractmethod
    def in_flight(self) -> dict[str, JobSpec]:
        """Suggested trials that have not ended, in suggestion order."""

    @abstractmethod
    def is_finished(self) -> bool:
        """Nothing is in flight and nothing will ever be suggested."""

    @abstractmethod
    def finish_reason(self) -> str:
        """Why the strategy has nothing more to suggest ('' while it has)."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """The whole state as plain (JSON) data."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""


# --------------------------------------------------------------------------- registry

STRATEGIES: dict[str, Callable[..., Strategy]] = {}


def register(name: str):
    """Class decorator: make a strategy selectable as `search.strategy: <name>`. Its
    `from_config(config, shapes=None)` classmethod builds it (`shapes`: a ShapeCosts,
    search/shape_costs.py, for a strategy that needs seed shapes' costs)."""
    def add(cls):
        if name in STRATEGIES:
            raise ValueError(f"strategy {name!r} is registered twice")
        STRATEGIES[name] = cls
        cls.name = name
        return cls
    return add


def known_strategies() -> list[str]:
    """Every registered name; importing the `strategies` package registers them all."""
    from petrinas.search import strategies  # noqa: F401
    return sorted(STRATEGIES)


def strategy_from_config(config, shapes=None) -> Strategy:
    """The strategy that `config.search.strategy` names, built from the config and, for
    one that asks what seed shapes cost (random_search), `shapes` (a ShapeCosts)."""
    name = config.search.strategy
    if name not in known_strategies():
        raise ConfigError(f"search.strategy: unknown strategy {name!r} (known: "
                          f"{', '.join(known_strategies())})")
    return STRATEGIES[name].from_config(config, shapes)


__all__ = ["Strategy", "JobSpec", "Suggestion", "FINISHED", "Finished", "SEED", "SEARCH",
           "RANDOM", "EVAL", "register", "known_strategies", "strategy_from_config"]
