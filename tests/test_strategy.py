"""The Petridish strategy on its own: no Ray, no torch, synthetic results."""

import json

import pytest

from petrinas.search.strategy import (FINISHED, SEARCH, SEED, JobSpec, PetridishStrategy,
                                      StopRules)

SEEDS = [(1, 0, 1), (2, 0, 1), (3, 1, 1)]


def fake_result(trial_id: str, spec: JobSpec, parents: dict) -> dict:
    """A deterministic result: children cost more than their parent and err a bit less."""
    if spec.stage == SEED:
        cells, reductions, nodes = spec.macro
        macs, err = 1000 * cells * (nodes + 1), 0.3 / cells
    else:
        parent = parents[spec.parent_id]
        cells, reductions, nodes = parent["cells"], parent["reductions"], parent["nodes"] + 1
        macs, err = parent["macs"] * 1.3, (1 - parent["val_top1"]) * 0.9
    row = {"macs": int(macs), "params": int(macs // 10), "val_top1": 1 - err,
           "test_top1": 1 - err, "cells": cells, "reductions": reductions, "nodes": nodes}
    parents[trial_id] = row
    return row


def drive(strategy: PetridishStrategy, steps: int, start: int = 0, parents=None,
          slots: int = 1) -> list:
    """Run the strategy like the runner does with `slots` slots; returns the specs."""
    parents = {} if parents is None else parents
    log, running, next_id = [], [], start
    for _ in range(steps):
        while len(running) < slots:
            tid = f"t{next_id:04d}"
            spec = strategy.suggest(tid)
            if not isinstance(spec, JobSpec):
                break
            next_id += 1
            running.append((tid, spec))
            log.append((tid, spec))
        if not running:
            break
        tid, spec = running.pop(0)
        strategy.on_trial_complete(tid, result=fake_result(tid, spec, parents))
    return log


def make(seed=0, **rules) -> PetridishStrategy:
    defaults = dict(max_trials=20, max_pool=100, max_macs=0, eps=0.025)
    return PetridishStrategy(SEEDS, StopRules(**{**defaults, **rules}), seed=seed)


def test_seeds_come_first_then_children_of_pool_models():
    log = drive(make(), steps=10)
    stages = [spec.stage for _, spec in log]
    assert stages[:3] == [SEED] * 3 and set(stages[3:]) == {SEARCH}
    assert [spec.macro for _, spec in log[:3]] == SEEDS
    ids = {tid for tid, _ in log}
    assert all(spec.parent_id in ids for _, spec in log[3:])


def test_nothing_now_while_only_seeds_are_in_flight():
    strategy = make()
    for i in range(3):
        assert strategy.suggest(f"t{i}").stage == SEED
    assert strategy.suggest("t3") is None
    strategy.on_trial_complete("t0", result=fake_result("t0", JobSpec(SEED, (1, 0, 1)), {}))
    assert strategy.suggest("t3").stage == SEARCH


def test_max_trials_is_never_exceeded_and_then_finished():
    strategy = make(max_trials=7)
    log = drive(strategy, steps=50, slots=3)
    assert len(log) == 7 and strategy.submitted == 7
    assert strategy.suggest("t9999") is FINISHED
    assert strategy.finish_reason() == "max_trials"


def test_failed_trials_count_against_the_budget_and_the_search_goes_on():
    strategy = make(max_trials=5)
    assert strategy.suggest("t0").stage == SEED
    strategy.on_trial_complete("t0", error="RuntimeError: boom")
    assert strategy.failed == 1 and len(strategy.pool) == 0
    log = drive(strategy, steps=20, start=1)
    assert len(log) == 4 and len(strategy.pool) == 4


def test_all_seeds_failing_finishes_the_search():
    strategy = make()
    for i in range(3):
        strategy.suggest(f"t{i}")
    for i in range(3):
        strategy.on_trial_complete(f"t{i}", error="boom")
    assert strategy.is_finished() and strategy.finish_reason() == "all seeds failed"


@pytest.mark.parametrize("rule,value,reason", [("max_macs", 2500, "max_macs"),
                                               ("max_pool", 4, "max_pool")])
def test_stop_rules(rule, value, reason):
    strategy = make(**{rule: value})
    drive(strategy, steps=30)
    assert strategy.stop_reason == reason
    assert strategy.suggest("t9999") is FINISHED


def test_parents_come_from_the_band_and_sampling_counts_grow():
    strategy = make(max_trials=30)
    drive(strategy, steps=30)
    band = set(strategy.pool.band(0.025))
    assert band
    assert sum(e.sampled for e in strategy.pool.entries()) == strategy.submitted - len(SEEDS)


def test_state_round_trips_through_json_and_continues_identically():
    a = make(seed=3, max_trials=40)
    parents_a = {}
    drive(a, steps=12, parents=parents_a)
    state = json.loads(json.dumps(a.state_dict()))
    b = make(seed=99, max_trials=40)  # a different seed: the state must override it
    b.load_state_dict(state)
    assert b.state_dict() == a.state_dict()
    parents_b = dict(parents_a)
    assert drive(a, steps=15, start=12, parents=parents_a) == \
        drive(b, steps=15, start=12, parents=parents_b)


def test_one_slot_fixed_seed_is_reproducible_and_the_seed_matters():
    runs = [drive(make(seed=s, max_trials=25), steps=25) for s in (7, 7, 8)]
    assert runs[0] == runs[1]
    assert [spec.parent_id for _, spec in runs[0]] != [spec.parent_id for _, spec in runs[2]]


def test_replaying_submissions_restores_the_exact_state():
    live = make(seed=5, max_trials=30)
    journal, parents, next_id, running = [], {}, 0, []
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
        row = fake_result(tid, spec, parents)
        live.on_trial_complete(tid, result=row)
        journal.append(("result", tid, row, None))
    replayed = make(seed=5, max_trials=30)
    for event, tid, payload, rng in journal:
        if event == "submit":
            replayed.restore_submission(tid, payload, rng)
        else:
            replayed.on_trial_complete(tid, result=payload)
    assert replayed.state_dict() == live.state_dict()


def test_unknown_trial_completion_is_an_error():
    with pytest.raises(KeyError):
        make().on_trial_complete("t0042", result={})


def test_strategy_and_hull_import_without_torch_or_ray():
    import subprocess
    import sys
    code = ("import sys, petrinas.search.strategy, petrinas.search.hull;"
            "assert 'torch' not in sys.modules and 'ray' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
