"""The strategies on their own: no Ray, no torch, synthetic results.

The contract tests run over the whole registry, so a new strategy file is checked by
them as soon as it exists; the rest pin down what each strategy does."""

import json
import math
import subprocess
import sys

import pytest

from petrinas.config_loader import load_config
from petrinas.errors import ConfigError
from petrinas.search.strategies.petridish import Petridish
from petrinas.search.strategies.random_parent import RandomParent
from petrinas.search.strategies.random_search import RandomSearch
from petrinas.search.strategies.random_selection import RandomSelection
from petrinas.search.strategy import (FINISHED, RANDOM, SEARCH, SEED, STRATEGIES, JobSpec,
                                      Strategy, known_strategies, strategy_from_config)

SEEDS = [(1, 0, 1), (2, 0, 1), (3, 1, 1)]


def fake_result(trial_id: str, spec: JobSpec, rows: dict) -> dict:
    """A deterministic result: children cost more than their parent and err a bit less."""
    if spec.stage in (SEED, RANDOM):
        cells, reductions, nodes = spec.macro
        macs, err = 1000 * cells * (nodes + 1), 0.3 / cells
    else:
        parent = rows[spec.parent_id]
        cells, reductions, nodes = parent["cells"], parent["reductions"], parent["nodes"] + 1
        macs, err = parent["macs"] * 1.3, (1 - parent["val_top1"]) * 0.9
    row = {"trial_id": trial_id, "parent_id": spec.parent_id or "", "stage": spec.stage,
           "status": "ok", "macs": int(macs), "params": int(macs // 10), "val_top1": 1 - err,
           "test_top1": 1 - err, "cells": cells, "reductions": reductions, "nodes": nodes}
    rows[trial_id] = row
    return row


def drive(strategy: Strategy, steps: int, start: int = 0, rows=None, slots: int = 1,
          on_suggest=None) -> list:
    """Run the strategy as the loop does with `slots` slots; returns the specs."""
    rows = {} if rows is None else rows
    log, running, next_id = [], [], start
    for _ in range(steps):
        while len(running) < slots:
            tid = f"t{next_id:04d}"
            spec = strategy.suggest(tid)
            if not isinstance(spec, JobSpec):
                break
            if on_suggest is not None:
                on_suggest(tid, spec)
            next_id += 1
            running.append((tid, spec))
            log.append((tid, spec))
        if not running:
            break
        tid, spec = running.pop(0)
        strategy.on_trial_complete(tid, result=fake_result(tid, spec, rows))
    return log


def make(cls=Petridish, seed=0, **kwargs) -> Strategy:
    if cls is RandomSearch:
        return RandomSearch(SEEDS, ["sep_conv_3x3", "max_pool_3x3", "none"], 3, seed=seed)
    return cls(SEEDS, **{"eps": 0.025, "seed": seed, **kwargs})


ALL = [Petridish, RandomSelection, RandomParent, RandomSearch]


# ---------------------------------------------------------------- the contract

def test_the_registry_holds_the_four_strategies():
    assert known_strategies() == ["petridish", "random_parent", "random_search",
                                  "random_selection"]
    assert {STRATEGIES[n] for n in known_strategies()} == set(ALL)


@pytest.mark.parametrize("name", known_strategies())
def test_every_strategy_is_built_from_its_config_name(name):
    from petrinas.model_desc.shapes import MeasuredShapeCosts
    config = load_config("petridish_digits", [f"search.strategy={name}"])
    strategy = strategy_from_config(config, MeasuredShapeCosts(config))
    assert isinstance(strategy, Strategy) and strategy.name == name


def test_an_unknown_strategy_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"search.strategy: unknown strategy 'petridsh'; "
                       r"known: petridish, random_parent, random_search, random_selection "
                       r"\(did you mean petridish\?\)"):
        load_config("petridish_digits", ["search.strategy=petridsh"])


@pytest.mark.parametrize("cls", ALL)
def test_state_round_trips_through_json_and_continues_identically(cls):
    a = make(cls, seed=3)
    rows_a = {}
    drive(a, steps=12, rows=rows_a, slots=2)
    state = json.loads(json.dumps(a.state_dict()))
    b = make(cls, seed=99)  # another seed: the state must override it
    b.load_state_dict(state)
    assert b.state_dict() == a.state_dict()
    rows_b = dict(rows_a)
    assert drive(a, steps=15, start=12, rows=rows_a) == drive(b, steps=15, start=12,
                                                             rows=rows_b)


@pytest.mark.parametrize("cls", ALL)
def test_replaying_the_journal_restores_the_exact_state(cls):
    live = make(cls, seed=5)
    journal, rows, next_id, running = [], {}, 0, []
    for _ in range(12):
        while len(running) < 2:
            tid = f"t{next_id:04d}"
            spec = live.suggest(tid)
            if not isinstance(spec, JobSpec):
                break
            next_id += 1
            running.append((tid, spec))
            journal.append(("submit", tid, spec, live.rng_state()))
        tid, spec = running.pop(0)
        row = fake_result(tid, spec, rows)
        live.on_trial_complete(tid, result=row)
        journal.append(("result", tid, row, None))
    replayed = make(cls, seed=5)
    for event, tid, payload, rng in journal:
        if event == "submit":
            replayed.restore_submission(tid, payload, rng)
        else:
            replayed.on_trial_complete(tid, result=payload)
    assert replayed.state_dict() == live.state_dict()
    assert list(replayed.in_flight) == [tid for tid, _ in running]


@pytest.mark.parametrize("cls", ALL)
def test_failures_and_duplicates_are_counted_not_pooled(cls):
    strategy = make(cls)
    first, second = strategy.suggest("t0000"), strategy.suggest("t0001")
    strategy.on_trial_complete("t0000", error="RuntimeError: boom")
    duplicate = {**fake_result("t0001", second, {}), "status": "duplicate",
                 "duplicate_of": "t0000"}
    strategy.on_trial_complete("t0001", result=duplicate)
    assert (strategy.failed, strategy.duplicates, len(strategy.pool)) == (1, 1, 0)
    assert first.stage in (SEED, RANDOM)
    with pytest.raises(KeyError):
        strategy.on_trial_complete("t0042", result={})


def test_every_search_module_imports_without_torch_or_ray():
    """petrinas/search is the pure algorithm (tests/test_layers.py checks its imports
    statically; this checks what importing it loads, whatever the route), and a fresh
    process knows every strategy there is a file for.

    Fails if importing search/ loads torch or Ray, or if strategies/__init__.py does
    not import a strategy's file."""
    code = ("import importlib, pkgutil, sys, petrinas.search, petrinas.search.strategy as s;"
            "known = s.known_strategies();"
            "names = [m.name for m in pkgutil.walk_packages(petrinas.search.__path__,"
            " 'petrinas.search.')];"
            "[importlib.import_module(name) for name in names];"
            "assert s.known_strategies() == known, (known, s.known_strategies());"
            "assert 'torch' not in sys.modules and 'ray' not in sys.modules;"
            "print(len(names))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 10  # every module, not none (hull, pool, strategies/...)


# ------------------------------------------------------------------ petridish

def test_seeds_come_first_then_children_of_pool_models():
    log = drive(make(), steps=10)
    stages = [spec.stage for _, spec in log]
    assert stages[:3] == [SEED] * 3 and set(stages[3:]) == {SEARCH}
    assert [spec.macro for _, spec in log[:3]] == SEEDS
    ids = {tid for tid, _ in log}
    assert all(spec.parent_id in ids and spec.selection == "alpha" for _, spec in log[3:])


def test_nothing_now_while_only_seeds_are_in_flight():
    strategy = make()
    for i in range(3):
        assert strategy.suggest(f"t{i}").stage == SEED
    assert strategy.suggest("t3") is None
    strategy.on_trial_complete("t0", result=fake_result("t0", JobSpec(SEED, (1, 0, 1)), {}))
    assert strategy.suggest("t3").stage == SEARCH


def test_every_parent_is_in_the_band_when_it_is_drawn():
    strategy = make(seed=1)
    drawn = []

    def check(tid, spec):
        if spec.stage == SEARCH:
            band = strategy.pool.band(0.025)
            assert spec.parent_id in band, (spec.parent_id, band)
            drawn.append(spec.parent_id)
    drive(strategy, steps=40, slots=2, on_suggest=check)
    # The pool has models outside the band by now, and none was ever drawn.
    outside = {e.trial_id for e in strategy.pool.entries()} - set(strategy.pool.band(0.025))
    assert outside and not outside & set(drawn)
    assert sum(e.sampled for e in strategy.pool.entries()) == len(drawn)


def test_models_over_the_cost_budget_are_never_grown():
    strategy = make(max_cost=3000)  # seeds cost 2000, 4000 and 6000 MACs
    log = drive(strategy, steps=30)
    parents = {spec.parent_id for _, spec in log if spec.stage == SEARCH}
    pool = strategy.pool
    assert parents and all(pool[p].cost <= 3000 for p in parents)
    # The over-budget seeds are on the frontier all the same, and in the band.
    assert {"t0001", "t0002"} <= set(pool.frontier()) & set(pool.band(0.025))
    assert not {"t0001", "t0002"} & parents


def test_a_budget_nothing_fits_finishes_after_the_seeds():
    strategy = make(max_cost=1500)
    log = drive(strategy, steps=10)
    assert [spec.stage for _, spec in log] == [SEED] * 3
    assert strategy.suggest("t9999") is FINISHED
    assert strategy.finish_reason() == "no model within search.max_macs to grow"


def test_all_seeds_failing_finishes_the_search():
    strategy = make()
    for i in range(3):
        strategy.suggest(f"t{i}")
    for i in range(3):
        strategy.on_trial_complete(f"t{i}", error="boom")
    assert strategy.is_finished() and strategy.finish_reason() == "all seeds failed"


def test_one_slot_fixed_seed_is_reproducible_and_the_seed_matters():
    runs = [drive(make(seed=s), steps=25) for s in (7, 7, 8)]
    assert runs[0] == runs[1]
    assert [spec.parent_id for _, spec in runs[0]] != [spec.parent_id for _, spec in runs[2]]


# ------------------------------------------------------------------ baselines

def test_random_selection_differs_from_petridish_in_the_selection_only():
    petridish, random = drive(make(seed=4), steps=20), drive(make(RandomSelection, seed=4),
                                                            steps=20)
    assert [(t, s.stage, s.parent_id, s.macro) for t, s in petridish] == \
        [(t, s.stage, s.parent_id, s.macro) for t, s in random]
    assert {s.selection for _, s in random if s.stage == SEARCH} == {"random"}


def test_random_parent_draws_from_the_whole_pool():
    strategy = make(RandomParent, seed=2)
    log = drive(strategy, steps=60)
    parents = [spec.parent_id for _, spec in log if spec.stage == SEARCH]
    band = set(strategy.pool.band(0.025))
    assert any(p not in band for p in parents)  # Petridish never does this (test above)
    assert {spec.selection for _, spec in log if spec.stage == SEARCH} == {"alpha"}


def test_random_search_draws_valid_random_models():
    strategy = make(RandomSearch, seed=0)
    log = drive(strategy, steps=30, slots=3)
    assert len(log) == 32 and {spec.stage for _, spec in log} == {RANDOM}
    assert {spec.macro for _, spec in log} == set(SEEDS)  # every shape comes up
    for _, spec in log:
        nodes = spec.macro[2]
        for kind in ("normal", "reduce"):
            cell = spec.cells[kind]
            assert len(cell) == nodes
            for k, edges in enumerate(cell):
                pairs = [tuple(e) for e in edges]
                assert len(pairs) == len(set(pairs)) == min(3, 2 * (2 + k))
                assert all(0 <= i < 2 + k and op in ("sep_conv_3x3", "max_pool_3x3")
                           for i, op in pairs)
    # Different draws, not one structure over and over (the space has 3 x 16 models).
    assert len({(spec.macro, json.dumps(spec.cells)) for _, spec in log}) > 10
    assert not strategy.is_finished()


def test_random_search_draws_node_counts_up_to_what_growth_reaches():
    """With max_nodes per (cells, reductions), every count from the seeds' least to that
    maximum comes up, and never one beyond."""
    strategy = RandomSearch(SEEDS, ["sep_conv_3x3", "max_pool_3x3", "none"], 3, seed=0,
                            max_nodes={(1, 0): 4, (2, 0): 1, (3, 1): 2})
    log = drive(strategy, steps=60, slots=3)
    drawn = {}
    for _, spec in log:
        drawn.setdefault(spec.macro[:2], set()).add(spec.macro[2])
        assert all(len(spec.cells[kind]) == spec.macro[2] for kind in ("normal", "reduce"))
    assert drawn == {(1, 0): {1, 2, 3, 4}, (2, 0): {1}, (3, 1): {1, 2}}


def test_random_search_log_uniform_node_counts_spread_evenly_on_a_log_scale():
    """search.random_nodes=log_uniform: P(n) = log((n + 1) / n) / log(27) for counts 1 to
    26, so a third of the draws have 1 or 2 nodes (uniform: 2 in 26) and half at most 4;
    every count still comes up, none beyond the reach."""
    def counts(draw):
        strategy = RandomSearch([(1, 0, 1)], ["sep_conv_3x3", "none"], 1, seed=0,
                                max_nodes={(1, 0): 26}, nodes_draw=draw)
        nodes = [strategy._draw_nodes(26) for _ in range(20_000)]
        return {n: nodes.count(n) / len(nodes) for n in range(1, 27)}, nodes

    shares, nodes = counts("log_uniform")
    assert min(nodes) == 1 and max(nodes) == 26 and set(nodes) == set(range(1, 27))
    for n, share in shares.items():
        assert share == pytest.approx(math.log((n + 1) / n) / math.log(27), abs=0.01), n
    assert sorted(nodes)[len(nodes) // 2] == 5  # exp(log(27) / 2) = 5.2
    uniform, _ = counts("uniform")
    assert all(share == pytest.approx(1 / 26, abs=0.01) for share in uniform.values())
    with pytest.raises(ValueError, match="nodes_draw must be one of uniform, log_uniform"):
        RandomSearch([(1, 0, 1)], ["sep_conv_3x3"], 1, nodes_draw="log")


def test_random_search_reads_its_node_draw_from_the_config():
    from petrinas.model_desc.shapes import MeasuredShapeCosts
    from petrinas.engine.runner import with_reference_point

    for draw in ("uniform", "log_uniform"):
        config = with_reference_point(load_config(
            "benchmark_digits_cheap", ["search.strategy=random_search",
                                       f"search.random_nodes={draw}"]))
        assert RandomSearch.from_config(config, MeasuredShapeCosts(config)).nodes_draw == draw


def test_growth_reach_is_the_deepest_cell_under_the_cap_plus_one_node():
    """benchmark_digits_cheap: max_macs 30K. A 1-cell seed costs 16,690 MACs with 1 node
    and 10,560 more per node, so 2 nodes (27,250) may still grow once: 3. The 2-cell seed
    with 2 nodes is above the cap: it is never grown, 2. With 4 trials (all seeds) no
    growth round is left: the seeds' 2."""
    from petrinas.engine.runner import with_reference_point
    from petrinas.model_desc.shapes import MeasuredShapeCosts, shape_cost
    from petrinas.search.strategies.random_search import growth_reach

    cheap = with_reference_point(load_config("benchmark_digits_cheap"))
    assert [shape_cost(cheap, 1, 0, n) for n in (1, 2, 5)] == [16_690, 27_250, 58_930]
    assert growth_reach(cheap, MeasuredShapeCosts(cheap)) == {(1, 0): 3, (2, 0): 2}
    four = with_reference_point(load_config("benchmark_digits_cheap", ["search.max_trials=4"]))
    assert growth_reach(four, MeasuredShapeCosts(four)) == {(1, 0): 2, (2, 0): 2}
    assert RandomSearch.from_config(cheap, MeasuredShapeCosts(cheap)).max_nodes == \
        {(1, 0): 3, (2, 0): 2}


class FakeShapeCosts:
    """A ShapeCosts with made-up answers that records the questions."""
    def __init__(self, costliest: float, deepest: int):
        self.costliest, self.deepest, self.asked = costliest, deepest, []

    def costliest_seed(self, column):
        self.asked.append(("costliest_seed", column))
        return self.costliest

    def deepest_nodes(self, cells, reductions, cap, column):
        self.asked.append(("deepest_nodes", cells, reductions, cap, column))
        return self.deepest


def test_growth_reach_asks_its_shapes_and_measures_nothing_itself():
    """The policy alone: the cap is the configured max when set, else the hypervolume
    reference, else ten times the costliest seed; latency caps the MACs instead. The
    budget's growth rounds bound the depth."""
    from petrinas.search.strategies.random_search import growth_reach

    def reach(overrides, shapes):
        config = load_config("benchmark_digits_cheap", ["search.max_trials=100", *overrides])
        return growth_reach(config, shapes)

    capped = FakeShapeCosts(costliest=1e9, deepest=7)
    assert reach(["search.max_macs=30000"], capped) == {(1, 0): 7, (2, 0): 7}
    assert capped.asked == [("deepest_nodes", 1, 0, 30000, "macs"),
                            ("deepest_nodes", 2, 0, 30000, "macs")]
    derived = FakeShapeCosts(costliest=5000, deepest=500)
    assert reach(["search.max_macs=0", "search.hv_ref_cost=0"], derived)[(1, 0)] == 2 + (100 - 4)
    assert derived.asked[0] == ("costliest_seed", "macs")
    assert derived.asked[1] == ("deepest_nodes", 1, 0, 50000.0, "macs")
    latency = FakeShapeCosts(costliest=5000, deepest=3)
    reach(["search.cost=latency", "search.max_macs=0", "search.hv_ref_cost=2.5"], latency)
    assert latency.asked[:2] == [("costliest_seed", "macs"),
                                 ("deepest_nodes", 1, 0, 50000.0, "macs")]


def test_random_search_from_config_needs_shapes():
    config = load_config("petridish_digits", ["search.strategy=random_search"])
    with pytest.raises(TypeError, match="random_search measures its seed shapes"):
        strategy_from_config(config)


# ------------------------------------------------------------- many slots, few parents

def _children_in_flight(strategy, parent):
    return sum(s.parent_id == parent for s in strategy.in_flight.values() if s.stage == SEARCH)


def test_with_many_slots_parents_are_drawn_least_busy_first():
    strategy = make(seed=6)
    checked = []

    def check(tid, spec):
        if spec.stage == SEARCH:
            band = strategy.parent_candidates()
            before = {t: _children_in_flight(strategy, t) for t in band}
            before[spec.parent_id] -= 1   # without the child just suggested
            assert before[spec.parent_id] == min(before.values()), (spec.parent_id, before)
            checked.append(len(band))
    log = drive(strategy, steps=40, slots=8, on_suggest=check)
    assert checked and max(checked) > 1
    # One seed finished first, yet its children did not take every slot.
    first_children = [s.parent_id for _, s in log[3:11]]
    assert len(set(first_children)) > 1


def test_a_cap_on_children_in_flight_makes_the_strategy_wait():
    strategy = make(max_children_in_flight=1)
    for i in range(3):
        strategy.suggest(f"t{i}")
    rows = {}
    for i in range(3):
        strategy.on_trial_complete(f"t{i}", result=fake_result(
            f"t{i}", strategy.in_flight[f"t{i}"], rows))
    band = strategy.parent_candidates()
    children = [strategy.suggest(f"t{3 + i}") for i in range(len(band))]
    assert sorted(c.parent_id for c in children) == sorted(band)  # one child each
    assert strategy.suggest("t9") is None                         # then: wait
