"""The kinds of job a trial runs (seed, search, random, eval), each declared once.

A kind is named by a JobSpec's `stage` (journaled, and the pool row's `stage` column).
What differs between kinds is read from its declaration, nowhere else:

- the driver (engine/runner.py) builds a job's payload from the spec fields the kind
  names, with its parent's description when it has a parent and the parent's weights
  when it inherits them;
- the Ray task (engine/jobs.py) receives the declaration itself (plain, picklable
  data), so a worker needs no registry, and calls the kind's `job`, a reference
  the engine resolves in the worker, so that this module stays free of torch, ray and
  any import by name (tests/test_layers.py refuses importlib in search/);
- the run log names the trial with `describe`;
- compare.py counts what the duplicates of a kind with `counts_savings` saved;
- the figures (report/figures.py) draw its models in its place of the declared order,
  under its `label`, and plot the models of `starts_search` kinds in the seeds figure;
- a row of a `retrains_parent` kind stands for its parent model: the tables (tables.py)
  name it by the parent, and runs.best_model finds it in its stage's trials/.

Adding a kind (a new way to make a model) is one declaration in KINDS and its job
function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator


@dataclass(frozen=True)
class JobKind:
    """One kind of job. `job` is "module:function", called in the worker as
    function(config, payload, weights, ctx, claim) -> TrialOutput (train/pipeline.py
    holds the built-in ones)."""
    name: str
    job: str
    spec_fields: tuple[str, ...] = ()  # the JobSpec fields its payload carries, as named
    parent: bool = False               # trains from a model of the run: payload["parent"]
    inherits_weights: bool = False     # ... and starts from that model's weights
    parent_title: str = ""             # the log's "<title> of <parent>" (default: name)
    # compare.py: a duplicate of this kind skipped training that a trained trial of the
    # kind paid; what it saved is the kind's median trained compute minus what it spent.
    counts_savings: bool = False
    label: str = ""                    # its models in a figure's legend (default: name)
    # Its models are where the search starts (trained from a seed macro, not grown):
    # the seeds figure plots them by shape.
    starts_search: bool = False
    # A trial of it is model `parent_id` trained again (the eval stage's models): its
    # row stands for that model, so tables name it by the parent; its stage stores each
    # such model once, in trials/<its id>, and keeps no gallery/ copies.
    retrains_parent: bool = False

    @property
    def legend_label(self) -> str:
        return self.label or self.name

    def payload(self, spec) -> dict:
        """The spec's fields that this kind's job reads, as plain data (a tuple as a
        list); the driver adds the parent's description."""
        values = {name: getattr(spec, name) for name in self.spec_fields}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    def describe(self, spec) -> str:
        """The trial, as the run log names it when it is submitted."""
        if self.parent:
            selection = f" ({spec.selection} selection)" if spec.selection != "alpha" else ""
            return f"{self.parent_title or self.name} of {spec.parent_id}{selection}"
        cells, reductions, nodes = spec.macro
        return f"{self.name} cells={cells} reductions={reductions} nodes={nodes}"


class Kinds:
    """A fixed set of kinds, by name, in the order declared (compare.py reads them in
    that order). `adding` returns a larger set; nothing changes one in place."""

    def __init__(self, *kinds: JobKind):
        names = [kind.name for kind in kinds]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"job kind {', '.join(map(repr, twice))} is declared twice")
        self._kinds = {kind.name: kind for kind in kinds}

    def get(self, name: str) -> JobKind:
        """The kind named `name`; an unknown name is refused, naming the known ones."""
        kind = self._kinds.get(name)
        if kind is None:
            raise ValueError(f"unknown job kind {name!r} (known: {', '.join(self._kinds)})")
        return kind

    def names(self, where: Callable[[JobKind], bool] = lambda kind: True
              ) -> tuple[str, ...]:
        """The names of the kinds `where` accepts, in the declared order: what a row's
        `stage` is compared with."""
        return tuple(kind.name for kind in self._kinds.values() if where(kind))

    def adding(self, *kinds: JobKind) -> "Kinds":
        return Kinds(*self._kinds.values(), *kinds)

    def __iter__(self) -> Iterator[JobKind]:
        return iter(self._kinds.values())

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def __len__(self) -> int:
        return len(self._kinds)


# The names strategies and stages spell JobSpec stages with.
SEED, SEARCH, RANDOM, EVAL = "seed", "search", "random", "eval"

_PIPELINE = "petrinas.train.pipeline"

KINDS = Kinds(
    # A seed model of `macro` = (cells, reductions, nodes), trained from scratch.
    JobKind(SEED, job=f"{_PIPELINE}:seed_job", spec_fields=("macro",), starts_search=True),
    # A child of `parent_id`: grown from its weights by a candidate node, its pairs
    # chosen by `selection`; a duplicate has paid the search phase only.
    JobKind(SEARCH, job=f"{_PIPELINE}:search_job", spec_fields=("selection",),
            parent=True, inherits_weights=True, parent_title="child", counts_savings=True,
            label="grown"),
    # A random cell model of `macro` (`cells`), trained from scratch: the baseline.
    JobKind(RANDOM, job=f"{_PIPELINE}:random_job", spec_fields=("macro", "cells"),
            counts_savings=True),
    # The eval-stage model of gallery model `parent_id`, trained from scratch.
    JobKind(EVAL, job=f"{_PIPELINE}:eval_job", parent=True, retrains_parent=True),
)

__all__ = ["JobKind", "Kinds", "KINDS", "SEED", "SEARCH", "RANDOM", "EVAL"]
