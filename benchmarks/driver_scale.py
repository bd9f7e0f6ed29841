#!/usr/bin/env python
"""Does one driver keep a large cluster busy, and does its cost per result stay flat?

    python benchmarks/driver_scale.py                 # 64 and 256 GPUs, pools to 10,000
    python benchmarks/driver_scale.py --slots 64 --pool-sizes 100,1000 --jobs 300

1. Utilization: the real loop, strategy, store and reporter (`run_stage`) on a local Ray
   instance that declares 64, then 256 GPUs, with the paper's seed ranges. Each job is a
   stand-in for training (the executor takes the task function as a parameter): it
   sleeps a random duration and returns a synthetic result of the real type, whose
   error and cost follow its parent's as a grown child's would. Reported: slot
   utilization from the jobs' own start and end times, between the moment the last seed
   finished and the last submission (the steady state: after the seed ramp, before the
   drain); beside it, the share of slots the driver kept submitted (running or queued in
   Ray: what the driver controls); distinct parents among the children in flight,
   sampled every half second. Each slot is a Ray worker process: 256 of them need more
   memory than a small machine has, and Ray's memory monitor then kills workers, which
   the first figure shows and the second does not.
2. Driver cost per result at pool sizes 100, 1,000 and 10,000: the same store, strategy
   and reporter fed synthetic results, each first claimed through the real architecture
   registry (a Ray actor, as a job claims it), with weights of the model's real size
   (4 bytes per parameter) written and fsync'ed into a run directory on a real disk
   (--dir; never /dev/shm). Both the driver's CPU time and the wall time of its loop
   (which adds the fsyncs and I/O waits a real run pays) per result, averaged over the
   max(200, N/8) results that follow size N: a window that holds one journal compaction
   (they are spaced in proportion to the run, store.py), so its cost is counted at its
   true rate.
3. The driver's peak memory (max RSS) after each part.

Part 1's stand-in jobs claim their architecture through the registry too (dedup on, as
in a real search) and return weights of their model's real size.

Targets: utilization >= 95 % at 64 and 256 slots; CPU per result at 10,000 <= 2x at 100.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CONFIG = ["dataset.name=digits", "dataset.root=", "resources.gpus_per_job=1",
          "resources.cpus_per_job=0.001", "search.plot_interval_s=30"]


def synthetic(payload: dict, kind, rng: random.Random) -> tuple[dict, float, float]:
    """(description, MACs, error) of a stand-in model of `kind` (a search.kinds.JobKind):
    a seed's from its macro shape, a child's from its parent's (a little costlier,
    usually a little better)."""
    if not kind.parent:
        cells, reductions, nodes = payload["macro"]
        macs = 2e6 * cells * (nodes + 1) * rng.uniform(0.9, 1.1) / (1 + reductions)
        error = 0.08 + 0.5 / (cells * nodes + 2) + rng.uniform(0, 0.01)
        node = {"edges": [{"input": 1, "op": "sep_conv_3x3"}]}
        desc = {"format": 1, "cells": cells, "reductions": reductions, "init_channels": 16,
                "stem_multiplier": 3, "num_classes": 10, "input_shape": [3, 32, 32],
                "aux_head": False, "normal": {"nodes": [node] * nodes},
                "reduce": {"nodes": [node] * nodes}}
    else:
        desc = dict(payload["parent"])
        sim = desc["meta"]["sim"]
        macs = sim["macs"] * rng.uniform(1.05, 1.5)
        error = sim["error"] * rng.uniform(0.8, 1.03)
        k = len(desc["normal"]["nodes"])
        node = {"edges": [{"input": rng.randrange(k + 2), "op": "sep_conv_3x3"}]}
        desc["normal"] = {"nodes": desc["normal"]["nodes"] + [node]}
        desc["reduce"] = {"nodes": desc["reduce"]["nodes"] + [node]}
    desc["meta"] = {"sim": {"macs": macs, "error": error}}
    return desc, macs, min(error, 0.99)


def arch_of(desc: dict) -> str:
    """The architecture hash a real job would claim."""
    from petrinas.model_desc.desc import ModelDesc
    return ModelDesc.from_dict(desc).arch_hash()


def weights_of(params: int) -> bytes:
    """float32 weights' size for `params` parameters (the bytes themselves don't matter
    to the driver, their size does)."""
    return bytes(4 * params)


def output_of(desc: dict, macs: float, error: float, started: float, seconds: float,
              duplicate_of: str | None = None):
    from petrinas.search.rows import TrialOutput
    nodes = len(desc["normal"]["nodes"])
    params = int(macs / 50)
    row = {"cells": desc["cells"], "reductions": desc["reductions"], "nodes": nodes,
           "macs": int(macs), "params": params, "val_top1": 1 - error,
           "test_top1": 1 - error * 1.05, "train_top1": 1 - error / 2, "epochs": 1,
           "examples": 1, "compute_s": seconds, "device": "stand-in",
           "arch_hash": arch_of(desc)}
    if duplicate_of:
        row["duplicate_of"] = duplicate_of
    return TrialOutput(desc=desc, weights=None if duplicate_of else weights_of(params),
                       row=row, notes={"started_at": started, "finished_at": started + seconds})


def stand_in_task(low: float, high: float):
    import ray

    @ray.remote
    def stand_in(kind, config, payload, weights, seed, want_gpu, cpu_threads, claim_as):
        """Sleeps like a training job, claims its architecture like one, and returns a
        synthetic result of the real type."""
        from petrinas.engine.jobs import _claimer

        rng = random.Random(seed)
        started = time.time()
        time.sleep(rng.uniform(low, high))
        desc, macs, error = synthetic(payload, kind, rng)
        owner = _claimer(*claim_as)(arch_of(desc)) if claim_as else None
        return output_of(desc, macs, error, started, time.time() - started, owner)
    return stand_in


# ----------------------------------------------------------------- 1. utilization

def _nap(seconds: float) -> None:
    time.sleep(seconds)


def utilization(slots: int, jobs: int, low: float, high: float, out: Path) -> dict:
    import ray

    from petrinas.config_loader import load_config
    from petrinas.engine.jobs import RayOptions
    from petrinas.report.progress import Progress
    from petrinas.engine.runner import JobRequests, run_stage, search_reporter, \
        with_reference_point
    from petrinas.search.stopping import Budget
    from petrinas.engine.store import RunStore, history
    from petrinas.search.strategy import SEARCH, SEED, strategy_from_config

    config = with_reference_point(load_config("petridish", [*CONFIG,
                                                            f"search.max_trials={jobs}"]))
    ray.init(num_cpus=2, num_gpus=slots, include_dashboard=False, log_to_driver=False,
             configure_logging=False,
             _system_config={"num_workers_soft_limit": slots + 8,
                             "worker_maximum_startup_concurrency": 8})
    nap = ray.remote(num_gpus=1, num_cpus=0)(_nap)
    ray.get([nap.remote(5) for _ in range(slots)])  # a worker per slot, before the clock
    store = RunStore.open(out / f"run{slots}", config, overwrite=True)
    strategy = strategy_from_config(config)
    reporter = search_reporter(store.dir, config, Progress(enabled=False))
    samples, done = [], threading.Event()

    def sample() -> None:
        while not done.wait(0.5):
            try:
                specs = list(strategy.in_flight.values())
            except RuntimeError:  # changed under us: take the next sample
                continue
            children = [s.parent_id for s in specs if s.stage == SEARCH]
            samples.append((time.time(), len(specs), len(children), len(set(children))))
    sampler = threading.Thread(target=sample, daemon=True)
    opened = time.time() - store.elapsed()
    sampler.start()
    started = time.perf_counter()
    run_stage(config, store, strategy, reporter, JobRequests(store.dir),
              budget=Budget.from_config(config), dedup=True, ray_options=RayOptions(),
              progress=Progress(enabled=False), header=lambda: "",
              task=stand_in_task(low, high))
    wall = time.perf_counter() - started
    done.set()
    reporter.finish()
    records = history(store.dir)
    store.close()
    ray.shutdown()

    import json
    spans, seed_ends = [], []
    for trial in (store.dir / "trials").iterdir():
        metrics = json.loads((trial / "metrics.json").read_text())
        notes = metrics["notes"]
        spans.append((notes["started_at"], notes["finished_at"]))
        if metrics["stage"] == SEED:
            seed_ends.append(notes["finished_at"])
    t0 = max(seed_ends)
    t1 = opened + max(r["elapsed"] for r in records if r["event"] == "submit")
    busy = sum(max(0.0, min(end, t1) - max(start, t0)) for start, end in spans)
    steady = [s for s in samples if t0 <= s[0] <= t1]
    return {"slots": slots, "jobs": jobs, "wall_s": wall, "window_s": t1 - t0,
            "utilization": busy / (slots * (t1 - t0)) if t1 > t0 else float("nan"),
            # The driver's side: trials it kept submitted (running or queued in Ray).
            "submitted": statistics.mean(s[1] for s in steady) / slots if steady else 0.0,
            "parents_median": statistics.median(s[3] for s in steady) if steady else 0,
            "parents_min": min((s[3] for s in steady), default=0),
            "children_median": statistics.median(s[2] for s in steady) if steady else 0,
            "series": samples, "peak_rss_mb": peak_rss_mb()}


# ----------------------------------------------------------- 2. CPU per result

def window(n: int) -> int:
    return max(200, n // 8)


def driver_cost(sizes: list[int], out: Path, slots: int = 64) -> dict:
    """Mean driver CPU and wall seconds per result over the window after each pool
    size, with the real registry and weights written to `out` (a real disk)."""
    import ray

    from petrinas.config_loader import load_config
    from petrinas.engine.jobs import RayExecutor, _claimer
    from petrinas.report.progress import Progress
    from petrinas.report.writers import FigureWriter
    from petrinas.engine.runner import JobRequests, search_reporter, with_reference_point
    from petrinas.engine.store import RunStore
    from petrinas.search.strategy import strategy_from_config

    last = max(n + window(n) for n in sizes)
    config = with_reference_point(load_config("petridish", [*CONFIG,
                                                            f"search.max_trials={last + slots}"]))
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    # The executor a real run starts: its registry actor, and its cache of parents'
    # weights in the object store (a parent's file is read and put there once).
    executor = RayExecutor(config, owners={})
    store = RunStore.open(out / "cost", config, overwrite=True)
    strategy = strategy_from_config(config)
    search = config.search
    # Figures are drawn off the loop's thread: leave them out of the driver's CPU time.
    reporter = search_reporter(store.dir, config, Progress(enabled=False))
    reporter.writers = [w for w in reporter.writers if not isinstance(w, FigureWriter)]
    reporter.start([])
    requests = JobRequests(store.dir)
    rng = random.Random(0)
    running: list[tuple] = []
    cpu: list[float] = []
    wall: list[float] = []
    sizes_mb: list[float] = []
    while len(cpu) < last:
        # The driver's part, timed: submissions (with the parent's weights put into the
        # object store on a cache miss), the claim, recording, the strategy, reports.
        begin, begin_wall = time.process_time(), time.perf_counter()
        while len(running) < slots:
            tid = store.next_trial_id()
            spec = strategy.suggest(tid)
            if spec is None:
                break
            store.record_submit(tid, spec, strategy.rng_state())
            job = requests(spec)
            if job.load_weights is not None:
                executor._weights_ref(job.weights_key, job.load_weights)
            running.append((tid, job))
        tid, job = running.pop(0)
        spec = store.specs[tid]
        used, used_wall = time.process_time() - begin, time.perf_counter() - begin_wall
        # The job's part, not timed: its synthetic model and weights.
        desc, macs, error = synthetic(job.payload, job.kind, rng)
        output = output_of(desc, macs, error, 0.0, 1.0)
        begin, begin_wall = time.process_time(), time.perf_counter()
        owner = _claimer(executor._registry, tid, spec.parent_id or "")(arch_of(desc))
        if owner is not None:
            output = output_of(desc, macs, error, 0.0, 1.0, owner)
        sizes_mb.append(len(output.weights or b"") / 2 ** 20)
        row = store.record_result(tid, output)
        strategy.on_trial_complete(tid, result=row)
        store.maybe_compact(strategy)
        reporter.add(row)
        cpu.append(used + time.process_time() - begin)
        wall.append(used_wall + time.perf_counter() - begin_wall)
    store.close()
    ray.shutdown()
    band = len(strategy.pool.band(search.convex_hull_eps))
    return {"per_result_ms": {n: 1000 * statistics.mean(cpu[n:n + window(n)]) for n in sizes},
            "per_result_wall_ms": {n: 1000 * statistics.mean(wall[n:n + window(n)])
                                   for n in sizes},
            # Weights grow with the lineages (a child costs more than its parent), and
            # writing and copying them is driver work: shown beside the cost they add.
            "weights_mb": {n: statistics.mean(sizes_mb[n:n + window(n)]) for n in sizes},
            "band_at_end": band, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slots", default="64,256", help="declared GPUs, comma-separated")
    p.add_argument("--jobs", type=int, default=0, help="trials per run (default 6x slots)")
    p.add_argument("--job-seconds", default="10,30", help="stand-in duration range")
    p.add_argument("--pool-sizes", default="100,1000,10000")
    p.add_argument("--skip-ray", action="store_true", help="only part 2")
    p.add_argument("--dir", default=".",
                   help="where part 2's run directory goes: a real disk (default: here)")
    args = p.parse_args(argv)
    low, high = (float(v) for v in args.job_seconds.split(","))
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="driver_scale.") as tmp:
        out = Path(tmp)
        if not args.skip_ray:
            print("slots  jobs  wall (s)  steady window (s)  utilization  submitted  parents "
                  "in flight (median, min)  children in flight (median)  driver peak RSS (MB)")
            for slots in (int(s) for s in args.slots.split(",")):
                r = utilization(slots, args.jobs or 6 * slots, low, high, out)
                print(f"{r['slots']:5d} {r['jobs']:5d} {r['wall_s']:9.1f} {r['window_s']:18.1f}"
                      f" {100 * r['utilization']:11.1f}% {100 * r['submitted']:9.1f}%"
                      f" {r['parents_median']:14.0f}, "
                      f"{r['parents_min']:<4d} {r['children_median']:27.0f} "
                      f"{r['peak_rss_mb']:21.0f}")
        sizes = [int(s) for s in args.pool_sizes.split(",")]
        cost = driver_cost(sizes, out)
        print("\npool size  driver CPU per result (ms)  wall per result (ms)  CPU ratio to the "
              "first  weights per result (MB)")
        first = cost["per_result_ms"][sizes[0]]
        for n in sizes:
            ms = cost["per_result_ms"][n]
            print(f"{n:9d} {ms:27.2f} {cost['per_result_wall_ms'][n]:21.2f} "
                  f"{ms / first:22.2f}x {cost['weights_mb'][n]:25.2f}")
        print(f"band at the end: {cost['band_at_end']} models; driver peak RSS "
              f"{cost['peak_rss_mb']:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
