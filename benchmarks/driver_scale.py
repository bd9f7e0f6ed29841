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
   (--dir, default the system's temporary directory; never /dev/shm). Both the driver's CPU time and the wall time of its loop
   (which adds the fsyncs and I/O waits a real run pays) per result, averaged over the
   max(200, N/8) results that follow size N: a window that holds one journal compaction
   (they are spaced in proportion to the run, store.py), so its cost is counted at its
   true rate.
3. The driver's peak memory (max RSS) after each part, and the disk each part used.

Part 1's stand-in jobs claim their architecture through the registry too (dedup on, as
in a real search) and return weights of their model's real size.

A stand-in model's size is that of the network its description builds (every value of
its state dict, 4 bytes each): a child has its parent's parameters and one node's more,
as a grown child has. (Sized from its synthetic MACs instead, as MACs / 50, the weights
grew by the MACs' 1.05-1.5x a generation, to 160 MB a model near search.max_macs, and a
10,000-model pool did not fit on a 100 GB disk.)

Part 2 empties the weights file of a model once it has left the ε-band (untimed; see
Retired): the driver never reads it again unless the model comes back into the band
(counted), and the disk a 10,000-model pool needs stays bounded by the band's weights.

Everything is written under one temporary directory (--dir), removed when the run ends,
is interrupted (Ctrl-C) or terminated; a run killed outright (SIGKILL) leaves it, and the
next run removes it. The disk each part used is printed.

Targets: utilization >= 95 % at 64 and 256 slots; CPU per result at 10,000 <= 2x at 100.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
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


# The fields of a description that, with its number of nodes, fix its stand-in's size.
MACRO = ("cells", "reductions", "init_channels", "stem_multiplier", "num_classes",
         "input_shape", "aux_head")


def real_params(desc: dict) -> int:
    """The values in the state dict of the network `desc` builds. A stand-in's nodes
    each hold one sep_conv_3x3 on a state of the cell's width, so the count is its
    macro shape's: linear in the nodes (each adds the same op and the same slice of the
    cell's output projection), fitted from the models of 1 and 2 nodes of that shape."""
    macro = json.dumps({key: desc[key] for key in MACRO}, sort_keys=True)
    if macro not in _PARAMS_OF_MACRO:
        _PARAMS_OF_MACRO[macro] = tuple(_macro_params(macro, nodes) for nodes in (1, 2))
    one, two = _PARAMS_OF_MACRO[macro]
    return one + (two - one) * (len(desc["normal"]["nodes"]) - 1)


# (1 node, 2 nodes) parameter counts by macro shape, as measured. A plain dict, not
# functools.lru_cache: the stand-in task (part 1) is pickled by value with what it
# calls, and Ray's workers cannot import a cached function of this script's __main__.
_PARAMS_OF_MACRO: dict[str, tuple[int, int]] = {}


def _macro_params(macro: str, nodes: int) -> int:
    from petrinas.model_desc import build_model
    from petrinas.model_desc.desc import ModelDesc

    node = {"edges": [{"input": 1, "op": "sep_conv_3x3"}]}
    desc = {"format": 1, **json.loads(macro), "normal": {"nodes": [node] * nodes},
            "reduce": {"nodes": [node] * nodes}}
    model = build_model(ModelDesc.from_dict(desc))
    return sum(value.numel() for value in model.state_dict().values())


def output_of(desc: dict, macs: float, error: float, started: float, seconds: float,
              duplicate_of: str | None = None):
    from petrinas.search.rows import TrialOutput
    nodes = len(desc["normal"]["nodes"])
    params = real_params(desc)
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
    # "local": an instance of its own, even where `ray start` left a cluster's address.
    ray.init(address="local", num_cpus=2, num_gpus=slots, include_dashboard=False,
             log_to_driver=False, configure_logging=False,
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
            "series": samples, "peak_rss_mb": peak_rss_mb(),
            "disk_gb": disk_bytes(store.dir) / 1e9}


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
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False,
             log_to_driver=False, configure_logging=False)
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
    disk_at: dict[int, float] = {}
    retired = Retired(store.dir)
    while len(cpu) < last:
        if len(cpu) in sizes:   # not timed: how much the run directory holds by now
            disk_at[len(cpu)] = disk_bytes(store.dir) / 1e9
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
        # Not timed: what the disk holds is bounded (Retired).
        retired.update(row, reporter.state.band)
    disk_at[len(cpu)] = disk_bytes(store.dir) / 1e9
    nodes = [int(r["nodes"]) for r in store.rows.values() if r.get("nodes") not in ("", None)]
    store.close()
    ray.shutdown()
    band = len(strategy.pool.band(search.convex_hull_eps))
    return {"per_result_ms": {n: 1000 * statistics.mean(cpu[n:n + window(n)]) for n in sizes},
            "per_result_wall_ms": {n: 1000 * statistics.mean(wall[n:n + window(n)])
                                   for n in sizes},
            # Weights grow with the lineages (a child costs more than its parent), and
            # writing and copying them is driver work: shown beside the cost they add.
            "weights_mb": {n: statistics.mean(sizes_mb[n:n + window(n)]) for n in sizes},
            "band_at_end": band, "peak_rss_mb": peak_rss_mb(),
            # The run directory's size when the pool reached each size, and at the end.
            "disk_gb": disk_at, "results": len(cpu), "retired": len(retired.done),
            "returned": len(retired.returned),
            "nodes_median": statistics.median(nodes), "nodes_max": max(nodes)}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------ the disk it uses

PREFIX = "driver_scale."


class Retired:
    """The weights files of part 2's models that left the ε-band, truncated to nothing:
    without it a 10,000-model pool needs tens of GB (a grown child has its parent's
    weights and one node's more, and lineages grow long: 4.7 GB by 3,000 results,
    2 MB a result there and rising). Every result's weights are still written and
    fsync'ed at full size (timed); only afterwards, untimed, is the file emptied.

    A parent is drawn from the band and its weights are read when its child is
    submitted, so the driver reads an emptied file only for a model that comes back
    into the band (the band can widen where a new model of lowest error extends the
    hull): those are counted in `returned`, and their reads cost less than they would."""

    def __init__(self, run_dir: Path):
        self.trials = Path(run_dir) / "trials"
        self.full: set[str] = set()        # trained models whose weights are whole
        self.done: set[str] = set()        # emptied
        self.returned: set[str] = set()    # emptied, then in the band again

    def update(self, row: dict, band: list[str]) -> None:
        if (self.trials / row["trial_id"] / "weights.pt").is_file():
            self.full.add(row["trial_id"])
        members = set(band)
        self.returned |= members & self.done
        for trial_id in self.full - members:
            os.truncate(self.trials / trial_id / "weights.pt", 0)
            self.full.discard(trial_id)
            self.done.add(trial_id)


def disk_bytes(folder: Path) -> int:
    """What `folder` occupies on disk (allocated blocks, as du counts them)."""
    total = 0
    for root, dirs, files in os.walk(folder):
        for name in files + dirs:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:   # removed while we walked
                pass
    return total


def remove_leftovers(parent: Path) -> list[Path]:
    """Remove the temporary folders (PREFIX<pid>.*) that runs killed outright left in
    `parent`: those whose process is gone. Returns them."""
    removed = []
    for folder in parent.glob(f"{PREFIX}*.*"):
        pid = folder.name[len(PREFIX):].split(".")[0]
        if folder.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process
        return True
    return True


def _exit_on(signum, frame) -> None:
    """SIGTERM and SIGHUP end the run as Ctrl-C does, by an exception: the temporary
    directory is removed on the way out."""
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slots", default="64,256", help="declared GPUs, comma-separated")
    p.add_argument("--jobs", type=int, default=0, help="trials per run (default 6x slots)")
    p.add_argument("--job-seconds", default="10,30", help="stand-in duration range")
    p.add_argument("--pool-sizes", default="100,1000,10000")
    p.add_argument("--skip-ray", action="store_true", help="only part 2")
    p.add_argument("--dir", default=tempfile.gettempdir(),
                   help="where the run directories go, in a temporary folder removed at the "
                        "end: a real disk, never /dev/shm (default: %(default)s)")
    args = p.parse_args(argv)
    low, high = (float(v) for v in args.job_seconds.split(","))
    for folder in remove_leftovers(Path(args.dir)):
        print(f"removed {folder}, left by a run that was killed")
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=f"{PREFIX}{os.getpid()}.") as tmp:
        out = Path(tmp)
        print(f"writing under {out} (removed at the end)")
        disk = {}
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
                disk[f"part 1, {slots} slots"] = r["disk_gb"]
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
              f"{cost['peak_rss_mb']:.0f} MB; nodes per model: median "
              f"{cost['nodes_median']:g}, at most {cost['nodes_max']}")
        print(f"weights emptied (untimed) once their model left the band: "
              f"{cost['retired']} models; of those back in the band later (read as "
              f"empty files): {cost['returned']}")
        disk["part 2"] = cost["disk_gb"][cost["results"]]
        print("\nrun directory on disk (GB) by results recorded: " + ", ".join(
            f"{n}: {gb:.3f}" for n, gb in sorted(cost["disk_gb"].items())))
        print(f"disk used: {disk_bytes(out) / 1e9:.3f} GB in all ("
              + ", ".join(f"{part} {gb:.3f}" for part, gb in disk.items())
              + f"); {out} removed now")
    return 0


if __name__ == "__main__":
    sys.exit(main())
