"""Resuming replays the journal into a fresh strategy: it must land where the live one was.

Every registered strategy is driven as the loop drives it (tests/test_store.py's order:
suggest, journal the submission with the strategy's RNG state; journal a result, then tell
the strategy), through its seeds and its growth, with synthetic rows of the real type
(`RunStore.record_result` builds them) whose costs and errors move the hull, the ε-band
and the cost budget, and with failures, duplicates, cancellations, a waiting slot and a
model whose files vanish. At a few points the run directory is copied, as a kill would
leave it. Each copy is reopened and replayed, as `runner.run_stage` does, into a strategy
built from the same config; it must hold the live strategy's state at that point, and,
driven on the same way, must make the same suggestions from the same RNG states: the
journal written after the copy must equal the live run's, record for record.

No Ray and no training; only random search asks what seed shapes cost, which imports
torch to measure them (MeasuredShapeCosts, as the runner hands it).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from petrinas.config import Config
from petrinas.config_loader import load_config
from petrinas.engine.store import SNAPSHOT, RunStore, history
from petrinas.model_desc.builder import build_seed
from petrinas.model_desc.shapes import MeasuredShapeCosts
from petrinas.search.rows import TrialOutput
from petrinas.search.strategy import SEARCH, SEED, JobSpec, Strategy, known_strategies, \
    strategy_from_config

# Four seed shapes (20K to 60K synthetic MACs), three slots: the seeds are not all
# suggested after the first step, and children start while seeds still train. A parent
# has at most one child in flight, so with fewer candidates than slots a slot waits.
# Children cost 15-55 % more than their parent, so growth soon crosses the 60K budget.
OVERRIDES = ["search.seeds.cells=[1, 2]", "search.seeds.reductions=[0, 0]",
             "search.seeds.nodes=[1, 2]", "search.max_macs=60000",
             "search.max_children_in_flight=1", "search.max_trials=100",
             # Given, so that the config is the one a resume uses as it is (runner.
             # with_reference_point derives only the keys left at 0), without Ray's import.
             "search.hv_ref_cost=600000", "search.hv_ref_error=0.9",
             "search.hv_cost_floor=20000"]
SLOTS = 3
# In step k one trial ends, ok unless named here (the steps after every cut have each).
ENDING = {2: "failed", 4: "duplicate", 7: "cancelled", 10: "failed", 12: "duplicate",
          15: "cancelled", 16: "failed", 18: "duplicate", 20: "failed"}
LOSE_AT = 5        # in this step the files of the most accurate pooled model vanish
COMPACT_AT = 11    # after this step the store writes a snapshot (the loop: every 200 records)
# Where the run is "killed": after this many steps. The last resumes from the snapshot.
CUTS = {"seeding": 1, "growing": 8, "after_snapshot": 14}
CONTINUE = 8       # steps driven after each cut, in the live run and in the resumed one
STEPS = max(CUTS.values()) + CONTINUE

FAILED_ERROR = "RuntimeError: synthetic failure"


def uniform(*key) -> float:
    """A number in [0, 1) fixed by `key`: the synthetic world depends on trial ids and
    steps only, so a live run and a resumed one see the same results."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2 ** 64


def measured(store: RunStore, trial_id: str, spec: JobSpec) -> dict:
    """What a job would measure: a seed or random model's cost grows with its shape; a
    child costs more than its parent and errs 30 % less to 10 % more (so some children
    fall outside the band)."""
    if spec.stage == SEARCH:
        parent = store.rows[spec.parent_id]
        cells, reductions, nodes = parent["cells"], parent["reductions"], parent["nodes"] + 1
        macs = parent["macs"] * (1.15 + 0.4 * uniform("cost", trial_id))
        error = (1 - parent["val_top1"]) * (0.7 + 0.4 * uniform("error", trial_id))
    else:
        cells, reductions, nodes = spec.macro
        macs = 10_000 * cells * (nodes + 1) * (1 + 0.3 * uniform("cost", trial_id))
        error = 0.6 / (cells * nodes) ** 0.5 * (0.85 + 0.3 * uniform("error", trial_id))
    return {"cells": cells, "reductions": reductions, "nodes": nodes, "macs": int(macs),
            "params": int(macs) // 10, "latency_ms": 0.1, "val_top1": 1 - error,
            "test_top1": 1 - error * 1.05, "train_top1": 1 - error * 0.8, "epochs": 2,
            "examples": 600, "compute_s": 1.5, "device": "cpu",
            "arch_hash": f"arch-{trial_id}"}


@dataclass
class Session:
    """One driver session on a run directory: the store, the strategy, and the synthetic
    jobs. Every choice it makes depends on the step, the journaled rows and the strategy's
    answers alone, so two sessions at the same point act alike while the strategies do."""
    store: RunStore
    strategy: Strategy
    desc: dict                  # every trial's model description (no strategy reads it)
    waited: int = 0                                  # suggest said "wait" with a slot free
    outcomes: set = field(default_factory=set)

    def step(self, k: int) -> None:
        self.fill()
        if k == LOSE_AT:
            self.lose_best()
        running = list(self.strategy.in_flight)
        if running:
            self.end(running[int(uniform("which", k) * len(running))], ENDING.get(k, "ok"))
        if k == COMPACT_AT:
            self.store.compact(self.strategy)

    def fill(self) -> None:
        """Suggestions into the free slots, each journaled before it runs (TrialLoop._fill)."""
        while len(self.strategy.in_flight) < SLOTS:
            trial_id = self.store.next_trial_id()
            spec = self.strategy.suggest(trial_id)
            if not isinstance(spec, JobSpec):
                self.waited += spec is None
                return
            self.store.record_submit(trial_id, spec, self.strategy.rng_state())

    def end(self, trial_id: str, how: str) -> None:
        """The trial ends: ok, failed, a duplicate of a trained model, or cancelled."""
        spec = self.strategy.in_flight[trial_id]
        if how == "failed":
            self.outcomes.add("failed")
            self.store.record_failure(trial_id, FAILED_ERROR, spent={"compute_s": 0.5})
            self.strategy.on_trial_complete(trial_id, error=FAILED_ERROR)
            return
        if how == "cancelled":
            # record_cancelled is not called by today's loop (a stop leaves its trials in
            # flight), but the journal and the interface have it: its replay is checked too.
            self.outcomes.add("cancelled")
            self.store.record_cancelled(trial_id)
            self.strategy.on_trial_cancelled(trial_id)
            return
        row = measured(self.store, trial_id, spec)
        trained = [t for t, r in self.store.rows.items() if r["status"] == "ok"]
        duplicate = how == "duplicate" and trained
        if duplicate:
            row["duplicate_of"] = trained[int(uniform("of", trial_id) * len(trained))]
            del row["val_top1"], row["test_top1"], row["train_top1"], row["latency_ms"]
        output = TrialOutput(desc=self.desc, weights=None if duplicate else b"weights",
                             row=row)
        row = self.store.record_result(trial_id, output)
        self.outcomes.add(row["status"])
        self.strategy.on_trial_complete(trial_id, result=row)

    def lose_best(self) -> None:
        """The most accurate trained model's weights vanish; the store journals it lost
        (as when a trial's parent is found gone: TrialLoop._lose_parent)."""
        trained = [r for r in self.store.rows.values() if r["status"] == "ok"]
        best = max(trained, key=lambda r: (r["val_top1"], r["trial_id"]))
        (self.store.trial_dir(best["trial_id"]) / "weights.pt").unlink()
        assert self.store.mark_lost(self.strategy) == [best["trial_id"]]
        self.outcomes.add("lost")


def plain(state: dict) -> dict:
    """A state as the snapshot would hold it (JSON), and frozen."""
    return json.loads(json.dumps(state))


def next_seq(store: RunStore) -> int:
    """The sequence number the store's next journal record gets."""
    if store.records:
        return store.records[-1]["seq"] + 1
    return store.snapshot["seq"] + 1 if store.snapshot else 0


def built(config: Config) -> Strategy:
    """The strategy of `config`, built as runner.run_search builds it."""
    return strategy_from_config(config, MeasuredShapeCosts(config))


def open_store(run_dir: Path, config) -> RunStore:
    return RunStore.open(run_dir, config, clock=lambda: 0.0)  # rows' elapsed_s: always 0


@dataclass
class LiveRun:
    config: Config
    run_dir: Path
    desc: dict
    copies: dict[str, Path]          # cut -> the run directory as it was after the cut
    snapshotted: set[str]            # the cuts whose copy holds a snapshot
    states: dict[int, dict]          # steps done -> the live strategy's state
    seqs: dict[int, int]             # steps done -> the next journal sequence number
    session: Session


@pytest.fixture(scope="module", params=known_strategies())
def live(request, tmp_path_factory) -> LiveRun:
    """A run of the strategy, STEPS steps long, copied at every cut."""
    config = load_config("petridish_digits", [f"search.strategy={request.param}", *OVERRIDES])
    desc = build_seed(config, cells=1, reductions=0, nodes=1).to_dict()
    base = tmp_path_factory.mktemp(request.param)
    store = open_store(base / "live", config)
    session = Session(store, built(config), desc)
    copies, states, seqs = {}, {0: plain(session.strategy.state_dict())}, {0: 0}
    for k in range(STEPS):
        session.step(k)
        states[k + 1], seqs[k + 1] = plain(session.strategy.state_dict()), next_seq(store)
        for cut, steps in CUTS.items():
            if steps == k + 1:   # what a kill now would leave (every record is fsynced)
                copies[cut] = base / cut
                shutil.copytree(store.dir, copies[cut])
    store.close()
    snapshotted = {cut for cut, path in copies.items() if (path / SNAPSHOT).exists()}
    return LiveRun(config, store.dir, desc, copies, snapshotted, states, seqs, session)


def resume(live: LiveRun, cut: str) -> Session:
    """The copy reopened as the same command would: a strategy from the config, the
    journal (and snapshot) replayed into it, lost files marked (runner.run_stage)."""
    store = open_store(live.copies[cut], live.config)
    strategy = built(live.config)
    store.replay(strategy)
    assert store.mark_lost(strategy) == []  # the copy has every file the live run had
    return Session(store, strategy, live.desc)


def submissions(records: list[dict]) -> list[tuple]:
    return [(r["trial_id"], r["spec"], r["rng"]) for r in records if r["event"] == "submit"]


@pytest.mark.parametrize("cut", CUTS)
def test_a_resumed_strategy_goes_on_exactly_as_the_live_one(live, cut):
    steps = CUTS[cut]
    resumed = resume(live, cut)
    try:
        assert plain(resumed.strategy.state_dict()) == live.states[steps]
        # In order too (dicts compare without it): the trials resume in this order.
        assert list(resumed.strategy.in_flight) == list(live.states[steps]["in_flight"])
        for k in range(steps, steps + CONTINUE):
            resumed.step(k)
        assert plain(resumed.strategy.state_dict()) == live.states[steps + CONTINUE]
        end = next_seq(resumed.store)
    finally:
        resumed.store.close()
    after = live.seqs[steps]
    expected = [r for r in history(live.run_dir) if after <= r["seq"] < end]
    written = [r for r in history(resumed.store.dir) if r["seq"] >= after]
    assert submissions(written) == submissions(expected)  # the next suggestions, first
    assert written == expected


def test_the_run_exercises_what_replay_must_get_right(live):
    """Guards the scenario itself: if the synthetic world changes so that a case is no
    longer reached, the test above would pass without checking it."""
    records = history(live.run_dir)
    session, strategy = live.session, live.session.strategy
    assert session.outcomes == {"ok", "failed", "duplicate", "cancelled", "lost"}
    pool = strategy.pool
    assert set(pool.band(0.025)) < {e.trial_id for e in pool.entries()}  # some outside
    assert any(e.cost > 60_000 for e in pool.entries())                   # over budget
    assert live.snapshotted == {"after_snapshot"}
    submits = [r for r in records if r["event"] == "submit"]
    seeds = [r["trial_id"] for r in submits if r["spec"]["stage"] == SEED]
    if seeds:   # the seed-and-grow strategies
        assert len(seeds) == 4
        assert sum(r["seq"] < live.seqs[CUTS["seeding"]] for r in submits
                   if r["trial_id"] in seeds) < 4    # cut before every seed was suggested
        first_child = next(r["seq"] for r in submits if r["spec"]["stage"] == SEARCH)
        ended = {r["trial_id"]: r["seq"] for r in records if r["event"] != "submit"}
        assert any(ended.get(t, first_child + 1) > first_child
                   for t in seeds)              # growth began amid the seeds
        assert session.waited                   # a free slot had to wait for a result
        parents = {r["spec"]["parent_id"] for r in submits if r["spec"]["stage"] == SEARCH}
        assert len(parents) > 2                 # parents are drawn from a pool
