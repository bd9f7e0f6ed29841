"""What petrinas' training loop costs on CPU: the trainer against a bare PyTorch loop.

Both train the same model (a digits seed cell network, the default CPU search's) on the
same data, with the same batch size, optimizer and gradient clipping, and evaluate the
validation split after every epoch and the test split once at the end. With `--data
synthetic` (uint8 images, 3x16x16), the trainer gets the splits a job gets (uint8,
normalized per batch) and the bare loop the float32 tensors normalized in advance. The bare loop is
what anyone would write by hand: shuffle, slice, forward, cross-entropy, backward, clip,
step. The two alternate, `--repeats` times, so a busy machine slows both alike; the
medians and their ratio are printed (training images per second, the evaluation passes
included in the time).

With `--compile`, the bare loop is also run with the model torch.compile'd, for the seed
model and for the same model grown by a candidate (a search-phase job), and the compile
time is set against the time it saves per epoch. The models have no reduction cell:
torch 2.14.1's compiled backward of a 1x1 stride-2 convolution (a reduction cell's
preprocessing) corrupts memory on CPU, which is why the trainer compiles on CUDA only.

    python benchmarks/trainer_overhead.py [--data digits|synthetic] [--epochs 3]
                                          [--repeats 5] [--compile]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from petrinas.config import TrainConfig
from petrinas.config_loader import load_config
from petrinas.data import TensorData, load_splits
from petrinas.model_desc import build_model, build_seed
from petrinas.model_desc.grow import grow_model
from petrinas.train.trainer import train

MACRO = {"cells": 3, "reductions": 0, "nodes": 2}
SYNTHETIC = ["dataset.name=synthetic", "dataset.synthetic_shape=[3, 16, 16]",
             "dataset.synthetic_size=2000"]


def bare_loop(model: nn.Module, splits: dict[str, TensorData], cfg: TrainConfig,
              seed: int, forward: nn.Module | None = None) -> list[float]:
    """Train by hand as the trainer does; returns each epoch's seconds."""
    forward = model if forward is None else forward
    train_x, train_y = splits["train"].x, splits["train"].y
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    seconds = []
    for epoch in range(cfg.epochs):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_y), generator=generator)
        for start in range(0, len(order), cfg.batch_size):
            index = order[start:start + cfg.batch_size]
            loss = F.cross_entropy(forward(train_x[index]), train_y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
        model.eval()
        with torch.no_grad():
            for name in ("val", "test") if epoch + 1 == cfg.epochs else ("val",):
                for start in range(0, len(splits[name]), 256):
                    model(splits[name].x[start:start + 256]).argmax(1)
        seconds.append(time.perf_counter() - started)
    return seconds


def compare(config, splits, cfg: TrainConfig, repeats: int,
            job_splits: dict[str, TensorData]) -> dict:
    """Median images/s of the bare loop (on `splits`) and of the trainer (on
    `job_splits`, the same data as a job holds it), alternating runs."""
    desc = build_seed(config, **MACRO)
    images = len(splits["train"]) * cfg.epochs
    rates: dict[str, list[float]] = {"bare loop": [], "trainer": []}
    for repeat in range(repeats):
        torch.manual_seed(repeat)
        model = build_model(desc)
        rates["bare loop"].append(images / sum(bare_loop(model, splits, cfg, repeat)))
        torch.manual_seed(repeat)
        model = build_model(desc)
        started = time.perf_counter()
        train(model, job_splits, cfg, seed=repeat)
        rates["trainer"].append(images / (time.perf_counter() - started))
    return {name: statistics.median(values) for name, values in rates.items()}


def compile_gain(config, splits, cfg: TrainConfig, grown: bool) -> dict:
    """Seconds per epoch eager and compiled (steady state), and the compile time."""
    desc = build_seed(config, **MACRO)
    torch.manual_seed(0)
    parent = build_model(desc)
    out = {}
    for compiled in (False, True):
        model = (grow_model(desc, parent.state_dict(), config.model.candidate_ops)
                 if grown else build_model(desc))
        forward = torch.compile(model, dynamic=False) if compiled else model
        epochs = bare_loop(model, splits, cfg, 0, forward)
        steady = statistics.median(epochs[1:])
        out["compiled" if compiled else "eager"] = steady
        if compiled:
            out["compile_s"] = epochs[0] - steady
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("digits", "synthetic"), default="digits")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", action="store_true",
                        help="also measure torch.compile on CPU (minutes)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config("petridish_digits", SYNTHETIC if args.data == "synthetic" else [])
    cfg = TrainConfig(**{**vars(config.search.seed_train), "epochs": args.epochs})
    splits = load_splits(config.dataset, config.seed)
    job_splits = load_splits(config.dataset, config.seed, keep_uint8=True)
    print(f"{args.data}: {job_splits['train'].x.dtype} {job_splits['train'].input_shape}; "
          f"digits seed model {MACRO}, {len(splits['train'])} training images, batch "
          f"{cfg.batch_size}, {args.epochs} epochs, {args.threads} thread(s), "
          f"median of {args.repeats}")
    rates = compare(config, splits, cfg, args.repeats, job_splits)
    for name, rate in rates.items():
        print(f"  {name:<10} {rate:9.0f} images/s")
    print(f"  trainer / bare loop: {rates['trainer'] / rates['bare loop']:.3f}")
    if args.compile:
        cfg = TrainConfig(**{**vars(cfg), "epochs": max(args.epochs, 4)})
        print(f"torch.compile on CPU (bare loop, {cfg.epochs} epochs; steady = median of "
              f"epochs 2..{cfg.epochs}):")
        for grown in (False, True):
            gain = compile_gain(config, splits, cfg, grown)
            saved = gain["eager"] - gain["compiled"]
            even = f"{gain['compile_s'] / saved:.0f} epochs" if saved > 0 else "never"
            print(f"  {'grown (search job)' if grown else 'seed (post-train job)':<22} "
                  f"eager {gain['eager']:.2f} s/epoch, compiled {gain['compiled']:.2f} "
                  f"s/epoch, compile {gain['compile_s']:.1f} s, break-even after {even}")


if __name__ == "__main__":
    main()
