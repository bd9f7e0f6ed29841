"""Training throughput of search jobs packed on one GPU, and the GPU-hours of the
paper's search at the measured rates.

Two jobs of `confs/petridish.yaml`, on synthetic CIFAR-shaped data (3x32x32, 10 classes,
45,000 training and 5,000 validation images, as CIFAR-10 splits), each training the
search phase's model as a search job does (`pipeline.train_phase`'s trainer, its config):
  * search: the search phase of a search job: a seed model of mid-range size (5 cells,
    2 reductions, 2 nodes) grown by a candidate node (candidate on, L1 on the alphas);
  * post:   the post-train phase: that child finalized (3 nodes, no candidate).
Each runs with `resources.gpus_per_job` 1, 0.5 and 0.25 (1, 2 and 4 jobs at once on one
GPU, placed by Ray), with `compile` off and on. The jobs of a row start training
together (a barrier), and the GPU's rate is measured over the window in which all of
them are past their first epoch and none has finished. Per row: training images/s of
the GPU (the jobs together) and per job (their mean), the first epoch's extra seconds
(cudnn autotuning, compilation), and memory per job (CUDA: peak reserved by PyTorch's
allocator, without the ~0.5 GB CUDA context; CPU: the worker's peak RSS). An epoch's
time includes its validation pass, as in a job.

The projection: `search.max_trials` trials of the paper config, of which the seed models
train `seed_train.epochs` at the post rate (a seed has no candidate), and every other
trial `search_train.epochs` at the search rate plus `post_train.epochs` at the post rate,
each kind at its cheapest row (images/s per GPU, plus the first epoch's extra seconds
shared by the jobs on the GPU). Models grow during a search, so this is an estimate at
one representative size.

Without CUDA it runs a reduced version (a small model on 16x16 images, a few hundred of
them, one GPU declared to Ray so that the packing goes through Ray as on a GPU; compile
is CUDA-only in the trainer, so those rows are not run): the numbers test the code,
they say nothing about GPUs.

    python benchmarks/gpu_throughput.py [--epochs 3] [--train-images 45000] [--reduced]
                                        [--packings 1,0.5,0.25] [--compile off,on]
                                        [--json results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import ray
import torch

from petrinas.config import Config, seed_macros
from petrinas.config_loader import load_config

PAPER = "petridish"
MACRO = {"cells": 5, "reductions": 2, "nodes": 2}
CIFAR10_TRAIN = 50_000  # CIFAR-10's official training images (train + val splits)
SYNTHETIC_CIFAR = ["dataset.name=synthetic", "dataset.synthetic_shape=[3, 32, 32]",
                   "dataset.synthetic_classes=10", "dataset.synthetic_size=60000",
                   f"dataset.test_fraction={1 / 6}"]   # 50,000 pool + 10,000 test
REDUCED = ["dataset.synthetic_shape=[3, 16, 16]", "dataset.synthetic_size=480",
           "model.init_channels=4", "model.stem_multiplier=1",
           "model.candidate_ops=[sep_conv_3x3, max_pool_3x3, skip_connect, none]"]
REDUCED_MACRO = {"cells": 3, "reductions": 1, "nodes": 1}
KINDS = ("search", "post")


# ------------------------------------------------------------------------- the jobs

def bench_config(reduced: bool, train_images: int, epochs: int,
                 batch_size: int | None = None) -> Config:
    """The paper config on synthetic CIFAR-shaped data (or the reduced CPU version)."""
    overrides = SYNTHETIC_CIFAR + (REDUCED if reduced else [])
    overrides.append(f"dataset.max_train={train_images}")
    for phase in ("search_train", "post_train"):
        overrides.append(f"search.{phase}.epochs={epochs}")
        if batch_size:
            overrides.append(f"search.{phase}.batch_size={batch_size}")
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


@ray.remote(num_cpus=0)
class Barrier:
    """Holds every job back until all have loaded their data and built their model, so
    that their training epochs run side by side (worker processes start at different
    times)."""

    def __init__(self, parties: int):
        self.parties, self.arrived = parties, 0
        self.all_here = asyncio.Event()

    async def wait(self) -> None:
        self.arrived += 1
        if self.arrived >= self.parties:
            self.all_here.set()
        await self.all_here.wait()


def run_job(config: Config, kind: str, macro: dict, compile_: bool, threads: int,
            barrier) -> dict:
    """One job, in a Ray worker: train, and report its epochs' wall-clock spans and its
    memory."""
    from petrinas.data import load_splits
    from petrinas.train.memory import peak_rss_mb, reset_peak_rss
    from petrinas.train.pipeline import pick_device
    from petrinas.train.trainer import train

    started = time.time()
    device = pick_device(want_gpu=True)
    torch.manual_seed(0)
    splits = load_splits(config.dataset, config.seed, keep_uint8=True)
    model, cfg, l1_params = job_model(config, kind, macro)
    cfg = dataclasses.replace(cfg, compile=compile_)
    if device == "cuda":
        torch.cuda.empty_cache()  # a reused worker keeps its last job's cache
        torch.cuda.reset_peak_memory_stats()
    reset_peak_rss()
    spans: list[tuple[float, float]] = []

    def record(metrics) -> None:
        now = time.time()
        spans.append((now - metrics.seconds, now))

    from torch import _dynamo  # noqa: F401  torch.optim's first use imports it (seconds)
    ray.get(barrier.wait.remote())
    result = train(model, splits, cfg, device=device, seed=0, l1_params=l1_params,
                   l1=config.search.l1, cpu_threads=threads, eval_test=False,
                   epoch_callback=record)
    memory = (torch.cuda.max_memory_reserved() if device == "cuda"
              else peak_rss_mb() * 2 ** 20)
    return {"device": device, "precision": result.final["precision"],
            "epoch_s": [m.seconds for m in result.history], "epoch_spans": spans,
            "train_images": len(splits["train"]), "memory_mb": memory / 2 ** 20,
            "span": (started, time.time())}


def steady(epoch_s: list[float]) -> tuple[float, float]:
    """(seconds of a steady epoch, extra seconds of the first): the first epoch carries
    cudnn autotuning and compilation, so the median of the others is the steady one."""
    if len(epoch_s) < 2:
        return epoch_s[0], 0.0
    rest = statistics.median(epoch_s[1:])
    return rest, epoch_s[0] - rest


def window_rate(jobs: list[list[tuple[float, float]]], train_images: int) -> float:
    """Training images/s of all jobs together, over the window in which every job was
    past its first (warm-up) epoch and none had finished. Each job is a list of its
    epochs' (start, end) wall-clock times; an epoch's `train_images` count in proportion
    to the part of it inside the window."""
    start = max(epochs[0][1] for epochs in jobs)
    end = min(epochs[-1][1] for epochs in jobs)
    if end <= start:
        raise ValueError("the jobs' steady epochs never ran side by side: use more epochs")
    images = 0.0
    for epochs in jobs:
        for first, last in epochs[1:]:
            inside = max(0.0, min(last, end) - max(first, start))
            images += train_images * inside / (last - first)
    return images / (end - start)


def measure(config: Config, kind: str, macro: dict, gpus_per_job: float, compile_: bool,
            cpus: float, threads: int) -> dict:
    """`1 / gpus_per_job` jobs at once on one GPU; per-job and per-GPU images/s."""
    jobs = round(1 / gpus_per_job)
    task = ray.remote(run_job).options(num_gpus=gpus_per_job, num_cpus=cpus / jobs,
                                       max_retries=0)
    barrier = Barrier.remote(jobs)
    outputs = ray.get([task.remote(config, kind, macro, compile_, threads, barrier)
                       for _ in range(jobs)])
    per_gpu = window_rate([out["epoch_spans"] for out in outputs],
                          outputs[0]["train_images"])
    return {"kind": kind, "gpus_per_job": gpus_per_job, "jobs": jobs, "compile": compile_,
            "device": outputs[0]["device"], "precision": outputs[0]["precision"],
            "images_per_s_job": per_gpu / jobs, "images_per_s_gpu": per_gpu,
            "first_epoch_extra_s": max(steady(out["epoch_s"])[1] for out in outputs),
            "memory_mb_job": max(out["memory_mb"] for out in outputs),
            "spans": [out["span"] for out in outputs],
            # Each job's own epoch times: a check of the window rate that does not use it.
            "epoch_s": [out["epoch_s"] for out in outputs],
            "train_images": outputs[0]["train_images"]}


# ----------------------------------------------------------------------- projection

def cifar10_train_images(config: Config) -> int:
    """Training images per epoch of a CIFAR-10 job under `config`'s split rules."""
    n = CIFAR10_TRAIN - int(round(CIFAR10_TRAIN * config.dataset.val_fraction))
    return min(n, config.dataset.max_train) if config.dataset.max_train else n


def phase_gpu_seconds(row: dict, epochs: int, train_images: int) -> float:
    """GPU-seconds of one job's training phase at a measured row: its epochs at the
    row's images/s per GPU, plus its first epoch's extra time (autotuning, compiling),
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


# ----------------------------------------------------------------------------- main

def _row_name(row: dict) -> str:
    return f"{row['gpus_per_job']:g} GPU/job, compile {'on' if row['compile'] else 'off'}"


def _table(rows: list[dict]) -> str:
    head = (f"{'job':<7}{'gpus/job':>9}{'jobs':>5}{'compile':>8}{'precision':>10}"
            f"{'img/s/job':>11}{'img/s/GPU':>11}{'x 1 job':>8}{'1st epoch +s':>13}"
            f"{'MiB/job':>9}")
    lines = [head]
    for row in rows:
        base = next((r for r in rows if r["kind"] == row["kind"] and r["jobs"] == 1
                     and r["compile"] == row["compile"]), None)
        gain = f"{row['images_per_s_gpu'] / base['images_per_s_gpu']:.2f}" if base else "-"
        lines.append(
            f"{row['kind']:<7}{row['gpus_per_job']:>9g}{row['jobs']:>5}"
            f"{'on' if row['compile'] else 'off':>8}{row['precision']:>10}"
            f"{row['images_per_s_job']:>11.0f}{row['images_per_s_gpu']:>11.0f}"
            f"{gain:>8}"
            f"{row['first_epoch_extra_s']:>13.1f}{row['memory_mb_job']:>9.0f}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=0,
                        help="epochs per job, the first being the warm-up (default: 3; "
                        "reduced: 6, as its epochs are short enough to drift apart)")
    parser.add_argument("--train-images", type=int, default=0,
                        help="training images per epoch (default: 45000; reduced: 64)")
    parser.add_argument("--batch-size", type=int, default=0,
                        help="default: the config's (128; reduced: 32)")
    parser.add_argument("--packings", default="1,0.5,0.25",
                        help="resources.gpus_per_job values to run")
    parser.add_argument("--compile", default="off,on", help="off, on or off,on")
    parser.add_argument("--reduced", action="store_true",
                        help="the small CPU version (the default without CUDA)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    cuda = torch.cuda.is_available()
    reduced = args.reduced or not cuda
    train_images = args.train_images or (64 if reduced else 45_000)
    epochs = args.epochs or (6 if reduced else 3)
    config = bench_config(reduced, train_images, epochs,
                          args.batch_size or (32 if reduced else None))
    macro = REDUCED_MACRO if reduced else MACRO
    packings = [float(p) for p in args.packings.split(",")]
    compiles = [c == "on" for c in args.compile.split(",")]
    if not cuda and True in compiles:
        print("compile: CUDA only in the trainer; its rows are not run without CUDA")
        compiles = [c for c in compiles if not c] or [False]
    cpus = float(os.cpu_count() or 1)
    # One intra-op thread per job on CPU: threads that outnumber free cores spin against
    # each other (and against anything else on the machine), which swamps the numbers.
    threads = 1 if not cuda else max(1, int(cpus // 4))
    print(f"{'reduced (CPU: tests the code, not a GPU)' if reduced else 'paper'} config, "
          f"macro {macro}, {train_images} training images/epoch, {epochs} epochs, "
          f"{torch.cuda.get_device_name() if cuda else 'no CUDA: 1 GPU declared to Ray'}")
    ray.init(address="local", num_cpus=int(cpus), num_gpus=torch.cuda.device_count() or 1,
             include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    rows = []
    try:
        for compile_ in compiles:
            for kind in KINDS:
                for packing in packings:
                    started = time.perf_counter()
                    rows.append(measure(config, kind, macro, packing, compile_, cpus,
                                        threads))
                    rows[-1]["wall_s"] = time.perf_counter() - started
    finally:
        ray.shutdown()
    print(_table(rows))
    paper = load_config(PAPER)
    images = cifar10_train_images(paper)
    epochs = {"search": paper.search.search_train.epochs,
              "post": paper.search.post_train.epochs}
    best = {kind: min((r for r in rows if r["kind"] == kind),
                      key=lambda r: phase_gpu_seconds(r, epochs[kind], images))
            for kind in KINDS}
    projection = project_gpu_hours(paper, best["search"], best["post"], images)
    label = " (reduced CPU rates: arithmetic only)" if reduced else ""
    print(f"projected {PAPER}.yaml search{label}: {paper.search.max_trials} trials "
          f"({projection['seeds']} seeds, {projection['children']} grown), "
          f"{projection['train_images']} images/epoch, at the cheapest rows "
          f"(search: {_row_name(best['search'])}; post: {_row_name(best['post'])}): "
          f"{projection['gpu_hours']:.1f} GPU-hours")
    results = {"reduced": reduced, "rows": rows, "projection": projection}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
