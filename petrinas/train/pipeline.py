"""What one trial does, start to finish, as plain functions (no Ray here).

- seed:   build the seed description, train it.
- search: grow the parent by a candidate node, train with the L1 term on the alphas,
          finalize the top-k pairs into a node, post-train.
- eval:   build the scaled eval description of a gallery model, train it from scratch.

Each returns a `TrialOutput`: the description, the weights as bytes (they travel back
through Ray's object store; the driver writes them), the pool row and per-epoch curves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
import torch

from petrinas.config import Config, TrainConfig
from petrinas.data import TensorData, load_splits
from petrinas.model_desc.builder import build_eval, build_seed
from petrinas.model_desc.cost import cost
from petrinas.model_desc.desc import ModelDesc
from petrinas.model_desc.grow import alphas, finalize, grow_model, select_pairs
from petrinas.model_desc.model import build_model, weights_from_bytes, weights_to_bytes
from petrinas.train.memory import MemoryGuard
from petrinas.train.trainer import TrainResult, train


@dataclass
class TrialOutput:
    desc: dict
    weights: bytes
    row: dict                       # pool.tsv fields measured by the job
    history: dict = field(default_factory=dict)  # phase -> list of per-epoch metrics
    notes: dict = field(default_factory=dict)


@dataclass(frozen=True)
class JobContext:
    """Where and how a job trains: device, CPU threads, and its own seed."""
    seed: int
    device: str = "cpu"
    cpu_threads: int | None = None
    memory_limit_mb: int = 0        # enforced on CPU jobs; CUDA raises its own OOM


def pick_device(want_gpu: bool) -> str:
    return "cuda" if want_gpu and torch.cuda.is_available() else "cpu"


def run_seed(config: Config, macro: tuple[int, int, int], ctx: JobContext) -> TrialOutput:
    torch.manual_seed(ctx.seed)  # new weights depend on the trial, not the worker's past
    cells, reductions, nodes = macro
    start = time.perf_counter()
    desc = build_seed(config, cells=cells, reductions=reductions, nodes=nodes)
    splits = load_splits(config.dataset, config.seed, keep_uint8=True)
    model = build_model(desc)
    result = _train(model, splits, config.search.seed_train, ctx)
    return _output(desc, model, {"seed_train": result}, start, ctx)


def run_search(config: Config, parent_desc: dict, parent_weights: bytes,
               ctx: JobContext) -> TrialOutput:
    torch.manual_seed(ctx.seed)  # new weights depend on the trial, not the worker's past
    start = time.perf_counter()
    parent = ModelDesc.from_dict(parent_desc)
    splits = load_splits(config.dataset, config.seed, keep_uint8=True)
    grown = grow_model(parent, weights_from_bytes(parent_weights, "parent weights"),
                       config.model.candidate_ops)
    searched = _train(grown, splits, config.search.search_train, ctx,
                      l1_params=alphas(grown), l1=config.search.l1)
    grown_state = {k: v.detach().cpu() for k, v in grown.state_dict().items()}
    chosen = select_pairs(grown.desc, grown_state, config.model.top_k)
    desc, state = finalize(grown.desc, grown_state, config.model.top_k)
    child = build_model(desc)
    child.load_state_dict(state)
    post = _train(child, splits, config.search.post_train, ctx)
    pairs = {kind: getattr(grown.desc, kind).candidate.pairs for kind in chosen}
    notes = {"chosen": {kind: [list(pairs[kind][m]) for m in idx]
                        for kind, idx in chosen.items()}}
    return _output(desc, child, {"search_train": searched, "post_train": post}, start, ctx,
                   notes)


def run_eval(config: Config, gallery_desc: dict, ctx: JobContext) -> TrialOutput:
    torch.manual_seed(ctx.seed)  # new weights depend on the trial, not the worker's past
    start = time.perf_counter()
    desc = build_eval(ModelDesc.from_dict(gallery_desc), config)
    splits = load_splits(config.dataset, config.seed, keep_uint8=True)
    model = build_model(desc)
    result = _train(model, splits, config.eval.train, ctx)
    return _output(desc, model, {"eval_train": result}, start, ctx)


def _train(model: torch.nn.Module, splits: dict[str, TensorData], cfg: TrainConfig,
           ctx: JobContext, **kwargs) -> TrainResult:
    guard = MemoryGuard(ctx.memory_limit_mb) if ctx.memory_limit_mb else None
    return train(model, splits, cfg, device=ctx.device, seed=ctx.seed,
                 cpu_threads=ctx.cpu_threads, epoch_callback=guard, **kwargs)


def _output(desc: ModelDesc, model: torch.nn.Module, phases: dict[str, TrainResult],
            start: float, ctx: JobContext, notes: dict | None = None) -> TrialOutput:
    model = model.cpu().eval()
    measured = cost(model, desc.input_shape)
    final = list(phases.values())[-1].final
    row = {"cells": desc.cells, "reductions": desc.reductions, "nodes": desc.nodes,
           "macs": int(measured["macs"]), "params": int(measured["params"]),
           "val_top1": final["val_top1"], "test_top1": final.get("test_top1"),
           "train_top1": final.get("train_top1"),
           "epochs": sum(len(r.history) for r in phases.values()),
           "wall_s": round(time.perf_counter() - start, 3), "device": ctx.device}
    # Wall-clock start and end let a reader check how jobs overlapped on the cluster.
    finished_at = time.time()
    timing = {"started_at": finished_at - (time.perf_counter() - start),
              "finished_at": finished_at}
    return TrialOutput(desc=desc.to_dict(), weights=weights_to_bytes(model.state_dict()),
                       row=row, history={k: r.to_dict() for k, r in phases.items()},
                       notes={**(notes or {}), **timing})
