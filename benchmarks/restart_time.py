"""Restart time of a long run: open + replay a run directory of N trials.

No training: synthetic results go through the real store (journal, trial folders,
snapshots) and the real strategy, exactly as the runner writes them. The same run is
built twice, with journal compaction (the default, a snapshot every SNAPSHOT_EVERY
records) and without it, and the time to reopen each is reported.

    python benchmarks/restart_time.py [--trials 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

import petrinas.engine.store as store_module
from petrinas.config_loader import load_config
from petrinas.model_desc import build_model, build_seed
from petrinas.model_desc.model import weights_to_bytes
from petrinas.engine.store import RunStore
from petrinas.search.strategy import JobSpec, strategy_from_config


def build_run(run_dir: Path, trials: int, compact: bool) -> None:
    config = load_config("petridish_digits", [f"search.max_trials={trials}",
                                              "search.max_pool=100000"])
    store = RunStore.open(run_dir, config)
    strategy = strategy_from_config(config)
    desc = build_seed(config, cells=1, reductions=0, nodes=1)
    weights = weights_to_bytes(build_model(desc).state_dict())
    rng = np.random.default_rng(0)
    for _ in range(trials):
        trial_id = store.next_trial_id()
        spec = strategy.suggest(trial_id)
        if not isinstance(spec, JobSpec):  # seeds in flight: finish one first
            break
        store.record_submit(trial_id, spec, strategy.rng_state())
        macs = int(rng.integers(30_000, 400_000))
        row = {"macs": macs, "params": macs // 20, "val_top1": float(rng.uniform(0.8, 0.99)),
               "test_top1": 0.9, "train_top1": 0.95, "epochs": 10, "wall_s": 1.0,
               "cells": 1, "reductions": 0, "nodes": 1}
        output = SimpleNamespace(row=row, desc=desc.to_dict(), weights=weights,
                                 history={}, notes={})
        row = store.record_result(trial_id, output)
        strategy.on_trial_complete(trial_id, result=row)
        if compact:
            store.maybe_compact(strategy)
    store.close()


def time_restart(run_dir: Path, repeats: int) -> tuple[float, int]:
    config = load_config(run_dir / "config.yaml")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        store = RunStore.open(run_dir, config)
        strategy = strategy_from_config(config)
        store.replay(strategy)
        times.append(time.perf_counter() - start)
        replayed = len(store.records)
        store.close()
    return statistics.median(times), replayed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"restart time of a {args.trials}-trial run directory "
          f"(median of {args.repeats}; open + lock + replay)")
    print(f"{'journal':<28}{'records replayed':>18}{'restart (ms)':>15}")
    with tempfile.TemporaryDirectory() as tmp:
        for compact, label in ((False, "one journal, no snapshot"),
                               (True, f"snapshots every {store_module.SNAPSHOT_EVERY}")):
            run_dir = Path(tmp) / label.replace(" ", "_")
            build_run(run_dir, args.trials, compact)
            seconds, replayed = time_restart(run_dir, args.repeats)
            print(f"{label:<28}{replayed:>18}{seconds * 1000:>15.1f}")


if __name__ == "__main__":
    main()
