"""Training throughput of search jobs on one GPU: eager against CUDA-graphed steps, with
1, 2, 4 and 8 jobs packed on the GPU, and the GPU-hours of the paper's search at the
measured rates.

The jobs train the paper config (`confs/petridish.yaml`) on synthetic CIFAR-shaped data
(3x32x32, 10 classes) at its batch size (128), with the trainer a search job uses:
  * search: the search phase of a search job: a seed model of mid-range size (5 cells,
    2 reductions, 2 nodes) grown by a candidate node (all 11 candidate ops, L1 on the
    alphas);
  * post:   the post-train phase: that child finalized (3 nodes, no candidate).
A row is one kind, one step (eager; graphed: `cuda_graphs` on; compiled: `compile` on)
and k jobs at once, each asking Ray for 1/k of the one GPU. Each job builds its model,
warms up (one short untimed pass: cudnn's autotuning, the first allocations), waits at a
barrier until all k jobs have got there (a bounded wait; `together` counts the jobs that
saw all k arrive, so a row whose jobs did not run at once says so), then trains
`--epochs` epochs of `--steps-per-epoch` batches, evaluating a small validation split
after each as a job does. Per row:
  img/s/GPU    training images/s of the k jobs together, over the window in which every
               job was past its first epoch and none had finished (n/a if there was none);
  img/s/job    that over k;   x 1 job: img/s/GPU over the 1-job row's of the same kind
               and step;
  ms/step      a job's training pass per step (evaluation left out), steady epochs'
               median, the mean over the jobs;
  1st epoch +s what the first epoch took beyond a steady one (the eager warm-up steps and
               the capture);
  MiB/job      CUDA: the peak memory PyTorch's allocator reserved in the job, without the
               CUDA context (~0.5 GiB); CPU: the worker's peak resident memory;
  SM util %    the GPU's utilization over the same window, sampled every 0.1 s through
               NVML (`pynvml`, from nvidia-ml-py) if it imports, else `nvidia-smi`: the
               share of time a kernel was running, nvidia-smi dmon's "sm"; n/a without
               either, never estimated (the row keeps its samples);
  graphs       jobs whose step was replayed as a graph / k (a failed capture shows here).
Each row is printed and appended to the `--out` file (JSON lines: a "setup" record with
the date, GPU and versions, one "row" record per row, "skipped" for rows the time budget
left out, and a last "projection") the moment it is measured.

The last line projects the GPU-hours of the paper's search (`search.max_trials` trials:
each seed trains `seed_train.epochs` at the post rate, each other trial
`search_train.epochs` at the search rate and `post_train.epochs` at the post rate, on
45,000 CIFAR-10 images per epoch), each kind at its cheapest measured row. Models grow
during a search, so it is an estimate at one representative size, from measured rates.

Default size: 16 steps per epoch, 3 epochs, 16 rows. From step times measured on one
H200 before (batch 128; search 206 ms eager, 41.5 ms graphed; post 40.4 and 8.0 ms), and
assuming a k-job row steps at the slower of the 1-job time and k graphed (GPU-bound)
steps, plus 8 s per row and 15 s for Ray (assumed), the rows should take about 4 minutes
(the script prints its estimate at start: 241 s; it is not a measurement). `--budget-s` (270 s)
stops starting rows past it; the rows run 1 job first, 8 last, so what a budget cuts
is the most packed rows, and says so.

Without CUDA it runs a reduced version (a small model on 16x16 images, 2 steps of 32 per
epoch, one GPU declared to Ray so that the packing goes through Ray as on a GPU; only
eager rows, the graphed and compiled steps being CUDA's): the numbers test the code,
they say nothing about GPUs.

    python benchmarks/gpu_throughput.py [--steps eager,graphed] [--jobs 1,2,4,8]
        [--kinds search,post] [--epochs 3] [--steps-per-epoch 16] [--budget-s 270]
        [--out runs/gpu_throughput.jsonl] [--reduced]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import ray
import torch

from petrinas.config import Config, seed_macros
from petrinas.config_loader import load_config

PAPER = "petridish"
MACRO = {"cells": 5, "reductions": 2, "nodes": 2}
CIFAR10_TRAIN = 50_000  # CIFAR-10's official training images (train + val splits)
REDUCED = ["dataset.synthetic_shape=[3, 16, 16]", "model.init_channels=4",
           "model.stem_multiplier=1",
           "model.candidate_ops=[sep_conv_3x3, max_pool_3x3, skip_connect, none]"]
REDUCED_MACRO = {"cells": 3, "reductions": 1, "nodes": 1}
KINDS = ("search", "post")
STEPS = ("eager", "graphed", "compiled")
WARM_BATCHES = 4      # the untimed warm-up pass: enough for the graphed step's capture
BARRIER_WAIT_S = 300  # how long a job waits for the others of its row to arrive
# One H200's step times (ms) at batch 128, the paper config's mid-size models, measured
# on 2026-11-30 (issue 28's figures): what the default size was chosen from.
H200_MS = {("search", "eager"): 206.3, ("search", "graphed"): 41.5,
           ("post", "eager"): 40.4, ("post", "graphed"): 8.0}
ROW_START_S, RAY_START_S = 8.0, 15.0   # assumed, not measured
HEAD = (f"{'job':<7}{'step':>9}{'jobs':>5}{'img/s/GPU':>11}{'img/s/job':>11}{'x 1 job':>8}"
        f"{'ms/step':>9}{'1st epoch +s':>13}{'MiB/job':>9}{'SM util %':>10}{'graphs':>7}"
        f"{'together':>9}")


# ------------------------------------------------------------------------- the jobs

def bench_config(reduced: bool, train_images: int, epochs: int, batch_size: int) -> Config:
    """The paper config on synthetic CIFAR-shaped data (or the reduced CPU version) with
    `train_images` training images, a validation split a ninth of that and a small test
    split (not evaluated)."""
    size = int(train_images / 0.9 / 0.95) + 2   # val 10 % of the pool, test 5 % of all
    overrides = ["dataset.name=synthetic", "dataset.synthetic_shape=[3, 32, 32]",
                 "dataset.synthetic_classes=10", f"dataset.synthetic_size={size}",
                 "dataset.test_fraction=0.05", "dataset.val_fraction=0.1",
                 f"dataset.max_train={train_images}", "dataset.root="]
    overrides += REDUCED if reduced else []
    for phase in ("search_train", "post_train"):
        overrides += [f"search.{phase}.epochs={epochs}",
                      f"search.{phase}.batch_size={batch_size}"]
    return load_config(PAPER, overrides)


def job_model(config: Config, kind: str, macro: dict):
    """(model, its phase's TrainConfig, L1 parameters) of a search or post-train job."""
    from petrinas.model_desc import build_model, build_seed
    from petrinas.model_desc.grow import alphas, finalize, grow_model

    desc = build_seed(config, **macro)
    grown = grow_model(desc, build_model(desc).state_dict(), config.model.candidate_ops)
    if kind == "search":
        return grown, config.search.search_train, alphas(grown)
    child_desc, state = finalize(grown.desc, grown.state_dict(), config.model.top_k)
    child = build_model(child_desc)
    child.load_state_dict(state)
    return child, config.search.post_train, []


def step_config(cfg, step: str):
    """The phase's TrainConfig with the step asked for."""
    return dataclasses.replace(cfg, cuda_graphs=step == "graphed", compile=step == "compiled")


@ray.remote(num_cpus=0)
class Barrier:
    """Holds every job of a row back until all have built and warmed up their model, so
    that they train side by side (worker processes start at different times). The wait
    is bounded: a job that waited in vain reports it instead of hanging."""

    def __init__(self, parties: int):
        self.parties, self.arrived = parties, 0
        self.all_here = asyncio.Event()

    async def wait(self, timeout_s: float) -> bool:
        """True once all parties have arrived; False if they had not within timeout_s."""
        self.arrived += 1
        if self.arrived >= self.parties:
            self.all_here.set()
        try:
            await asyncio.wait_for(self.all_here.wait(), timeout_s)
        except asyncio.TimeoutError:
            return False
        return True


def _head(data, n: int):
    return dataclasses.replace(data, x=data.x[:n], y=data.y[:n], indices=None)


def run_job(config: Config, kind: str, macro: dict, step: str, threads: int, barrier,
            wait_s: float) -> dict:
    """One job, in a Ray worker: build, warm up, wait for the row's other jobs, train;
    report each epoch's wall-clock span and training seconds, and the job's memory."""
    from petrinas.data import load_splits
    from petrinas.train.memory import peak_rss_mb, reset_peak_rss
    from petrinas.train.pipeline import pick_device
    from petrinas.train.trainer import train

    device = pick_device(want_gpu=True)
    torch.manual_seed(0)
    splits = load_splits(config.dataset, config.seed, keep_uint8=True)
    model, cfg, l1_params = job_model(config, kind, macro)
    cfg = step_config(cfg, step)
    common = dict(device=device, seed=0, l1_params=l1_params, l1=config.search.l1,
                  cpu_threads=threads, eval_test=False)
    warm = {"train": _head(splits["train"], WARM_BATCHES * cfg.batch_size),
            "val": _head(splits["val"], cfg.batch_size)}
    train(model, warm, dataclasses.replace(cfg, epochs=1), **common)
    model.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    reset_peak_rss()
    spans: list[tuple[float, float]] = []

    def record(metrics) -> None:
        now = time.time()
        spans.append((now - metrics.seconds, now))

    together = ray.get(barrier.wait.remote(wait_s))
    result = train(model, splits, cfg, epoch_callback=record, **common)
    memory = (torch.cuda.max_memory_reserved() / 2 ** 20 if device == "cuda"
              else peak_rss_mb())
    return {"device": device, "gpu_ids": [str(i) for i in ray.get_gpu_ids()],
            "precision": result.final["precision"],
            "training_step": result.final["training_step"], "together": together,
            "epoch_spans": spans, "epoch_s": [m.seconds for m in result.history],
            "train_s": [m.train_seconds for m in result.history],
            "train_images": len(splits["train"]), "batch_size": cfg.batch_size,
            "memory_mb": memory}


# -------------------------------------------------------------------- a row's numbers

def steady(epoch_s: list[float]) -> tuple[float, float]:
    """(seconds of a steady epoch, extra seconds of the first): the first epoch carries
    the warm-up steps and the capture, so the median of the others is the steady one."""
    if len(epoch_s) < 2:
        return epoch_s[0], 0.0
    rest = statistics.median(epoch_s[1:])
    return rest, epoch_s[0] - rest


def steady_window(jobs: list[list[tuple[float, float]]]) -> tuple[float, float] | None:
    """(start, end) of the time every job was past its first epoch and none had
    finished; None if there was no such time. Each job: its epochs' (start, end)."""
    start = max(epochs[0][1] for epochs in jobs)
    end = min(epochs[-1][1] for epochs in jobs)
    return (start, end) if end > start else None


def window_rate(jobs: list[list[tuple[float, float]]], train_images: int) -> float:
    """Training images/s of all jobs together over their steady window (see
    `steady_window`); an epoch's `train_images` count in proportion to the part of it
    inside the window."""
    window = steady_window(jobs)
    if window is None:
        raise ValueError("the jobs' steady epochs never ran side by side: use more epochs")
    start, end = window
    images = 0.0
    for epochs in jobs:
        for first, last in epochs[1:]:
            inside = max(0.0, min(last, end) - max(first, start))
            images += train_images * inside / (last - first)
    return images / (end - start)


def window_mean(samples: list[tuple[float, float]], window: tuple[float, float] | None
                ) -> float | None:
    """The mean of the (time, value) samples inside the window; None if none is."""
    if window is None:
        return None
    inside = [value for at, value in samples if window[0] <= at <= window[1]]
    return sum(inside) / len(inside) if inside else None


def summarize(kind: str, step: str, outputs: list[dict],
              samples: list[tuple[float, float]], util_source: str | None) -> dict:
    """A row from its jobs' reports and the utilization samples taken meanwhile: pure
    arithmetic on recorded numbers (the jobs' reports stay in the row, under "jobs_raw",
    so that it can be recomputed)."""
    jobs = len(outputs)
    spans = [out["epoch_spans"] for out in outputs]
    window = steady_window(spans)
    per_gpu = window_rate(spans, outputs[0]["train_images"]) if window else None
    steps = -(-outputs[0]["train_images"] // outputs[0]["batch_size"])
    ms = [1000 * statistics.median(out["train_s"][1:] or out["train_s"]) / steps
          for out in outputs]
    graphed = sum(out["training_step"].get("replayed", 0) > 0
                  and "failed" not in out["training_step"] for out in outputs)
    return {"record": "row", "kind": kind, "step": step, "jobs": jobs,
            "gpus_per_job": 1 / jobs, "device": outputs[0]["device"],
            "precision": outputs[0]["precision"], "batch_size": outputs[0]["batch_size"],
            "steps_per_epoch": steps, "together": sum(out["together"] for out in outputs),
            "graphed_jobs": graphed,
            "images_per_s_gpu": per_gpu,
            "images_per_s_job": per_gpu / jobs if per_gpu is not None else None,
            "ms_per_step": sum(ms) / jobs,
            "first_epoch_extra_s": max(steady(out["epoch_s"])[1] for out in outputs),
            "memory_mb_job": max(out["memory_mb"] for out in outputs),
            "sm_util_pct": window_mean(samples, window), "util_source": util_source,
            "util_samples": samples, "window": window, "jobs_raw": outputs}


def format_row(row: dict, base: dict | None) -> str:
    """The row's line of the table; `base`: the 1-job row of its kind and step, if any."""
    def num(value, spec: str, width: int) -> str:
        return f"{value:>{width}{spec}}" if value is not None else f"{'n/a':>{width}}"

    gain = (row["images_per_s_gpu"] / base["images_per_s_gpu"]
            if base and base["images_per_s_gpu"] and row["images_per_s_gpu"] else None)
    graphs = f"{row['graphed_jobs']}/{row['jobs']}" if row["step"] == "graphed" else "-"
    return (f"{row['kind']:<7}{row['step']:>9}{row['jobs']:>5}"
            f"{num(row['images_per_s_gpu'], '.0f', 11)}"
            f"{num(row['images_per_s_job'], '.0f', 11)}{num(gain, '.2f', 8)}"
            f"{row['ms_per_step']:>9.1f}{row['first_epoch_extra_s']:>13.1f}"
            f"{row['memory_mb_job']:>9.0f}{num(row['sm_util_pct'], '.0f', 10)}"
            f"{graphs:>7}{row['together']:>7}/{row['jobs']}")


class RowWriter:
    """Prints each record's line and appends the record to a JSON-lines file the moment
    it is given, flushed, so that a run stopped half-way keeps the rows it measured."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.rows: list[dict] = []

    def write(self, record: dict, line: str | None = None) -> None:
        if record["record"] == "row":
            self.rows.append(record)
            base = next((r for r in self.rows if r["kind"] == record["kind"]
                         and r["step"] == record["step"] and r["jobs"] == 1), None)
            line = format_row(record, base)
        if line is not None:
            print(line, flush=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


# --------------------------------------------------------------- GPU utilization

class UtilSampler:
    """The first GPU's utilization every `period_s` seconds, in a background thread, as
    (time.time(), percent): through NVML if `pynvml` imports, else `nvidia-smi`; with
    neither, no samples (`source` None)."""

    def __init__(self, period_s: float = 0.1):
        self.period_s = period_s
        self.samples: list[tuple[float, float]] = []
        self.source = self._source()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen | None = None

    @staticmethod
    def _source() -> str | None:
        try:
            import pynvml
            pynvml.nvmlInit()
            return "nvml"
        except Exception:  # not installed, or no driver: try the command line tool
            pass
        try:
            subprocess.run(["nvidia-smi", "-L"], capture_output=True, check=True, timeout=10)
            return "nvidia-smi"
        except (OSError, subprocess.SubprocessError):
            return None

    def __enter__(self) -> "UtilSampler":
        self.samples, self._stop = [], threading.Event()
        if self.source == "nvml":
            self._thread = threading.Thread(target=self._poll_nvml, daemon=True)
        elif self.source == "nvidia-smi":
            self._process = subprocess.Popen(
                ["nvidia-smi", "-i", "0", "--query-gpu=utilization.gpu",
                 "--format=csv,noheader,nounits", f"--loop-ms={int(self.period_s * 1000)}"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self._thread = threading.Thread(target=self._read_smi, daemon=True)
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._process is not None:
            self._process.terminate()
            self._process.wait()
            self._process = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _poll_nvml(self) -> None:
        import pynvml
        handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        while not self._stop.wait(self.period_s):
            self.samples.append((time.time(),
                                 float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)))

    def _read_smi(self) -> None:
        for line in self._process.stdout:
            try:
                self.samples.append((time.time(), float(line.strip())))
            except ValueError:  # "[N/A]" or a message: no sample
                pass


# ----------------------------------------------------------------------- projection

def cifar10_train_images(config: Config) -> int:
    """Training images per epoch of a CIFAR-10 job under `config`'s split rules."""
    n = CIFAR10_TRAIN - int(round(CIFAR10_TRAIN * config.dataset.val_fraction))
    return min(n, config.dataset.max_train) if config.dataset.max_train else n


def phase_gpu_seconds(row: dict, epochs: int, train_images: int) -> float:
    """GPU-seconds of one job's training phase at a measured row: its epochs at the
    row's images/s per GPU, plus its first epoch's extra time (warm-up steps, capture),
    which the jobs sharing the GPU spend side by side."""
    return (epochs * train_images / row["images_per_s_gpu"]
            + row["first_epoch_extra_s"] / row["jobs"])


def project_gpu_hours(config: Config, search_row: dict, post_row: dict,
                      train_images: int) -> dict:
    """GPU-hours of `config`'s search: each seed trains at the post-train row (a seed
    has no candidate), each other trial its search phase at the search row and its
    post-train phase at the post row. Data loading and the final test pass (seconds
    per job) are left out."""
    seeds = min(len(seed_macros(config)), config.search.max_trials)
    children = config.search.max_trials - seeds
    search = config.search
    seconds = (seeds * phase_gpu_seconds(post_row, search.seed_train.epochs, train_images)
               + children * (phase_gpu_seconds(search_row, search.search_train.epochs,
                                               train_images)
                             + phase_gpu_seconds(post_row, search.post_train.epochs,
                                                 train_images)))
    return {"seeds": seeds, "children": children, "train_images": train_images,
            "gpu_hours": seconds / 3600}


def projection(rows: list[dict], reduced: bool) -> tuple[dict, str]:
    """The paper search's GPU-hours at each kind's cheapest measured row, and its line."""
    paper = load_config(PAPER)
    images = cifar10_train_images(paper)
    epochs = {"search": paper.search.search_train.epochs,
              "post": paper.search.post_train.epochs}
    best = {}
    for kind in KINDS:
        measured = [r for r in rows if r["kind"] == kind and r["images_per_s_gpu"]]
        if measured:
            best[kind] = min(measured,
                             key=lambda r: phase_gpu_seconds(r, epochs[kind], images))
    if len(best) < len(KINDS):
        return ({"record": "projection", "gpu_hours": None},
                f"projected {PAPER}.yaml search: n/a (it needs a measured search row and "
                f"a measured post row)")
    out = project_gpu_hours(paper, best["search"], best["post"], images)
    label = " (reduced CPU rates: arithmetic only)" if reduced else ""
    names = {kind: f"{row['step']}, {row['jobs']} job(s)/GPU" for kind, row in best.items()}
    line = (f"projected {PAPER}.yaml search{label}: {paper.search.max_trials} trials "
            f"({out['seeds']} seeds, {out['children']} grown), {out['train_images']} "
            f"images/epoch, at the cheapest measured rows (search: {names['search']}; "
            f"post: {names['post']}): {out['gpu_hours']:.1f} GPU-hours")
    return {"record": "projection", **out,
            "rows": {kind: [row["step"], row["jobs"]] for kind, row in best.items()}}, line


# ----------------------------------------------------------------------------- main

def estimate_s(plan: list[tuple[int, str, str]], steps: int, epochs: int) -> float:
    """Seconds the rows should take on one H200: an estimate from H200_MS and the
    assumed start-up times, not a measurement. A k-job row is taken to step at the
    slower of the 1-job time and k graphed steps (the GPU's own time per step)."""
    total = RAY_START_S
    for jobs, kind, step in plan:
        graphed = H200_MS[kind, "graphed"]
        ms = max(H200_MS.get((kind, step), H200_MS[kind, "eager"]), jobs * graphed)
        total += ROW_START_S + (steps * epochs + WARM_BATCHES) * ms / 1000
    return total


def _bad_input(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _csv(option: str, text: str, allowed: tuple | None, cast=str) -> list:
    try:
        values = [cast(v) for v in text.split(",") if v]
    except ValueError:
        values = []
    if not values or any(allowed is not None and v not in allowed for v in values):
        _bad_input(f"{option}: expected a comma-separated list of "
                   f"{', '.join(allowed) if allowed else 'integers'}, got {text!r}")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        epilog="Rows go to --out as JSON lines (one object per line: record = setup, "
               "row, skipped or projection), appended as each is measured. The default "
               "size (16 rows, 16 steps of 128 per epoch, 3 epochs) was chosen to finish "
               "in under 5 minutes on one H200: about 4 by an estimate from step times "
               "measured on one before and assumed start-up times, not by a measurement.")
    parser.add_argument("--steps", default="eager,graphed",
                        help="eager, graphed (cuda_graphs) and/or compiled (compile)")
    parser.add_argument("--jobs", default="1,2,4,8", help="jobs at once on the GPU")
    parser.add_argument("--kinds", default="search,post")
    parser.add_argument("--epochs", type=int, default=3,
                        help="epochs per job, the first being the warm-up (default 3)")
    parser.add_argument("--steps-per-epoch", type=int, default=0,
                        help="training batches per epoch (default: 16; reduced: 2)")
    parser.add_argument("--batch-size", type=int, default=0,
                        help="default: the config's (128; reduced: 32)")
    parser.add_argument("--budget-s", type=float, default=270.0,
                        help="start no row once this many seconds have passed")
    parser.add_argument("--out", type=Path, default=Path("runs/gpu_throughput.jsonl"),
                        help="JSON-lines file the records are appended to "
                        "(default: runs/gpu_throughput.jsonl)")
    parser.add_argument("--reduced", action="store_true",
                        help="the small CPU version (the default without CUDA)")
    args = parser.parse_args(argv)
    args.steps = _csv("--steps", args.steps, STEPS)
    args.jobs = _csv("--jobs", args.jobs, None, int)
    args.kinds = _csv("--kinds", args.kinds, KINDS)
    if args.epochs < 2:
        _bad_input(f"--epochs: at least 2 (the first is the warm-up), got {args.epochs}")
    if any(jobs < 1 for jobs in args.jobs):
        _bad_input(f"--jobs: at least 1 job per row, got {args.jobs}")
    return args


def setup_record(reduced: bool, plan: list, args, estimate: float | None) -> dict:
    cuda = torch.cuda.is_available()
    return {"record": "setup", "date": datetime.datetime.now(datetime.timezone.utc)
            .isoformat(timespec="seconds"), "reduced": reduced,
            "gpu": torch.cuda.get_device_name() if cuda else None,
            "torch": torch.__version__, "cuda": torch.version.cuda, "ray": ray.__version__,
            "python": platform.python_version(), "cpus": os.cpu_count(),
            "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch,
            "batch_size": args.batch_size, "rows": plan, "estimate_s": estimate}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cuda = torch.cuda.is_available()
    reduced = args.reduced or not cuda
    args.steps_per_epoch = args.steps_per_epoch or (2 if reduced else 16)
    args.batch_size = args.batch_size or (32 if reduced else 128)
    if not cuda and args.steps != ["eager"]:
        print("graphed and compiled steps: CUDA only in the trainer; without CUDA only "
              "the eager rows run")
        args.steps = ["eager"]
    config = bench_config(reduced, args.steps_per_epoch * args.batch_size, args.epochs,
                          args.batch_size)
    macro = REDUCED_MACRO if reduced else MACRO
    plan = [(jobs, kind, step) for jobs in args.jobs for kind in args.kinds
            for step in args.steps]
    estimate = None if reduced else estimate_s(plan, args.steps_per_epoch, args.epochs)
    writer = RowWriter(args.out)
    writer.write(setup_record(reduced, plan, args, estimate),
                 f"{'reduced (CPU: tests the code, not a GPU)' if reduced else 'paper'} "
                 f"config, macro {macro}, {args.steps_per_epoch} steps of "
                 f"{args.batch_size} per epoch, {args.epochs} epochs, "
                 f"{torch.cuda.get_device_name() if cuda else 'no CUDA: 1 GPU declared'}"
                 + (f"; estimated {estimate:.0f} s (from earlier H200 step times, not "
                    f"measured)" if estimate else "") + f"\nrecords: {args.out}\n{HEAD}")
    run_rows(plan, config, macro, args, writer)
    record, line = projection(writer.rows, reduced)
    writer.write(record, line)
    return {"reduced": reduced, "rows": writer.rows, "projection": record}


def run_rows(plan: list, config: Config, macro: dict, args, writer: RowWriter) -> None:
    """Measures the rows of `plan` in order, each written as it is measured, until the
    time budget is spent (the rows left are written as skipped)."""
    started = time.perf_counter()
    try:
        _run_rows(plan, config, macro, args, writer, started)
    finally:
        if ray.is_initialized():
            ray.shutdown()


def _run_rows(plan: list, config: Config, macro: dict, args, writer: RowWriter,
              started: float) -> None:
    cpus = float(os.cpu_count() or 1)
    for i, (jobs, kind, step) in enumerate(plan):
        spent = time.perf_counter() - started
        if spent >= args.budget_s:
            writer.write({"record": "skipped", "rows": plan[i:], "spent_s": spent},
                         f"budget: {spent:.0f} s spent of {args.budget_s:.0f}; rows not "
                         f"run: {plan[i:]}")
            return
        if i == 0:
            ray.init(address="local", num_cpus=int(cpus), num_gpus=1,
                     include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR)
        # One intra-op thread per job on CPU: threads that outnumber free cores spin
        # against each other; on a GPU the host's cores shared by the most packed row.
        threads = max(1, int(cpus // max(args.jobs))) if torch.cuda.is_available() else 1
        writer.write(measure_row(config, kind, macro, step, jobs, cpus, threads))


def measure_row(config: Config, kind: str, macro: dict, step: str, jobs: int,
                cpus: float, threads: int) -> dict:
    """`jobs` jobs at once, each asking Ray for 1/jobs of a GPU (and of `cpus`), with
    the GPU's utilization sampled meanwhile: the row (see `summarize`)."""
    started = time.perf_counter()
    task = ray.remote(run_job).options(num_gpus=1 / jobs, num_cpus=cpus / jobs,
                                       max_retries=0)
    barrier = Barrier.remote(jobs)
    with UtilSampler() as sampler:
        outputs = ray.get([task.remote(config, kind, macro, step, threads, barrier,
                                       BARRIER_WAIT_S) for _ in range(jobs)])
    row = summarize(kind, step, outputs, sampler.samples, sampler.source)
    row["wall_s"] = time.perf_counter() - started
    return row


if __name__ == "__main__":
    main(sys.argv[1:])
