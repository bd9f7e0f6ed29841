"""What one trial does, start to finish, as plain functions (no Ray here).

- seed:   build the seed description, train it.
- search: grow the parent by a candidate node, train with the L1 term on the alphas,
          finalize k pairs into a node (top-k |alpha|, or random for the baseline),
          post-train.
- random: build a random cell model (the random-search baseline), train it from scratch.
- eval:   build the scaled eval description of a gallery model, train it from scratch.

Each returns a `TrialOutput`: the description, the weights as bytes (they travel back
through Ray's object store; the driver writes them), the pool row and per-epoch curves.
The row includes what the trial cost: `compute_s`, `device` and `examples` (training
examples processed). `compute_s` is device-seconds times the job's share of its device,
so that packing jobs on a GPU or sharing cores with other work does not inflate it: on
a GPU, wall seconds times `resources.gpus_per_job` (two jobs packed on one GPU for 10 s
cost 10 GPU-seconds between them, not 20); on the CPU, the job process's CPU seconds
(the core-seconds it used: time spent waiting for a core held by another process does
not count). A job that raises carries what it spent on its exception (`note_spent`),
so a failed trial counts its compute too.

A trial about to train an architecture asks `claim(arch_hash)` first: if another trial
owns it (trained it, or is training it), the trial stops there and returns a duplicate
of that trial (no weights), so no model is paid for twice. The executor keys the claim
by the trial's parent too (rows.claim_key): the same architecture grown from another
parent starts from other weights, a model of its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from itertools import islice
from typing import Callable

import torch

from petrinas.config import Config, TrainConfig
from petrinas.data import TensorData, load_splits
from petrinas.model_desc.builder import build_eval, build_random, build_seed
from petrinas.model_desc.cost import cost
from petrinas.model_desc.desc import ModelDesc
from petrinas.model_desc.grow import (alphas, finalize, grow_model, next_best_choices,
                                      random_pairs, ranked_pairs, select_pairs)
from petrinas.model_desc.model import build_model, weights_from_bytes, weights_to_bytes
from petrinas.model_desc.pair_scores import Evidence, get_score
from petrinas.search.rows import TrialOutput
from petrinas.train.memory import MemoryGuard
from petrinas.train.trainer import TrainResult, Window, train

# A pair score that reads data (pair_scores.py) measures on the first examples of the
# train split (in order: every trial measures on the same ones), in one batch.
SCORE_EXAMPLES = 256

# claim(arch_hash) -> the trial id that already owns the architecture, or None (ours now)
Claim = Callable[[str], "str | None"]


def no_claims(arch_hash: str) -> None:
    return None


@dataclass(frozen=True)
class JobContext:
    """Where and how a job trains: device, CPU threads, and its own seed."""
    seed: int
    device: str = "cpu"
    cpu_threads: int | None = None
    memory_limit_mb: int = 0        # enforced on CPU jobs; CUDA raises its own OOM
    device_share: float = 1.0       # on a GPU: resources.gpus_per_job (CPU: unused)


@dataclass(frozen=True)
class Stopwatch:
    """When a job started, on the clocks its compute is measured with."""
    wall: float
    cpu: float

    @classmethod
    def begin(cls) -> "Stopwatch":
        return cls(time.perf_counter(), time.process_time())

    def compute_s(self, ctx: JobContext) -> float:
        """Device-seconds times the job's share of its device since `begin` (see the
        module's docstring)."""
        if ctx.device == "cpu":
            return round(time.process_time() - self.cpu, 3)
        return round((time.perf_counter() - self.wall) * ctx.device_share, 3)


def device_name(ctx: JobContext) -> str:
    return f"cuda:{torch.cuda.get_device_name()}" if ctx.device == "cuda" else ctx.device


def note_spent(exc: BaseException, start: Stopwatch, ctx: JobContext) -> None:
    """Attach what a failing job spent to its exception (it travels back with it
    through Ray, pickled with the exception's attributes): a failed trial's compute."""
    try:
        exc.petrinas_spent = {"compute_s": start.compute_s(ctx), "device": device_name(ctx)}
    except (AttributeError, TypeError):  # an exception type without attributes: uncounted
        pass


def pick_device(want_gpu: bool) -> str:
    return "cuda" if want_gpu and torch.cuda.is_available() else "cpu"


def run_seed(config: Config, macro: tuple[int, int, int], ctx: JobContext,
             claim: Claim = no_claims) -> TrialOutput:
    torch.manual_seed(ctx.seed)  # new weights depend on the trial, not the worker's past
    cells, reductions, nodes = macro
    start = Stopwatch.begin()
    desc = build_seed(config, cells=cells, reductions=reductions, nodes=nodes)
    return _train_new(config, desc, config.search.seed_train, "seed_train", ctx, claim,
                      start)


def run_random(config: Config, macro: tuple[int, int, int], cells: dict, ctx: JobContext,
               claim: Claim = no_claims) -> TrialOutput:
    """A random-search model, trained from scratch for the seed plus post-train epochs."""
    torch.manual_seed(ctx.seed)
    start = Stopwatch.begin()
    desc = build_random(config, macro, cells)
    phase = replace(config.search.seed_train,
                    epochs=config.search.seed_train.epochs + config.search.post_train.epochs)
    return _train_new(config, desc, phase, "random_train", ctx, claim, start)


def _train_new(config: Config, desc: ModelDesc, phase: TrainConfig, name: str,
               ctx: JobContext, claim: Claim, start: Stopwatch) -> TrialOutput:
    owner = claim(desc.arch_hash())
    if owner is not None:
        return _duplicate(desc, owner, {}, start, ctx, 0)
    splits = load_splits(config.dataset, config.seed, keep_uint8=True)
    model = build_model(desc)
    result = train_phase(model, splits, phase, ctx)
    return _output(desc, model, {name: result}, start, ctx, len(splits["train"]))


@dataclass
class Searched:
    """A parent grown by a candidate node, after its search phase: what finalize picks
    from. `state` is on the CPU."""
    desc: ModelDesc
    state: dict[str, torch.Tensor]
    result: TrainResult
    scores: dict[int, torch.Tensor] | None = None  # per cell (None: |alpha|, from state)


def search_phase(config: Config, parent: ModelDesc, parent_weights: bytes,
                 splits: dict[str, TensorData], ctx: JobContext) -> Searched:
    """Grow `parent` by a candidate node and train it with the L1 term on the alphas."""
    grown = grow_model(parent, weights_from_bytes(parent_weights, "parent weights"),
                       config.model.candidate_ops, config.search.candidate_affine)
    result = train_phase(grown, splits, config.search.search_train, ctx,
                         l1_params=alphas(grown), l1=config.search.l1,
                         extra_params_lr=config.search.alpha_lr or None,
                         window=child_windows(config)[0])
    state = {k: v.detach().cpu() for k, v in grown.state_dict().items()}
    scores = None
    if config.search.pair_score != "alpha":  # after the state: measuring moves BatchNorms
        evidence = Evidence(grown, score_batch(splits["train"], grown))
        scores = get_score(config.search.pair_score).fn(evidence)
    return Searched(grown.desc, state, result, scores)


def score_batch(train: TensorData, model: torch.nn.Module
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch a data-reading pair score measures on, on the model's device."""
    index = slice(0, min(len(train), SCORE_EXAMPLES))
    device = next(model.parameters()).device
    return train.batch(index).to(device), train.y[index].to(device)


def finalize_child(config: Config, searched: Searched, selection: str, seed: int, *,
                   chosen: dict[str, list[int]] | None = None
                   ) -> tuple[ModelDesc, dict[str, torch.Tensor], dict]:
    """The finalized child (description, weights) of `searched`, its pairs `chosen` or
    else chosen by `selection` ("alpha": top-k |alpha|; "random"), and notes naming the
    pairs."""
    if chosen is None:
        chosen = _choose(searched, config.model.top_k, selection, seed)
    desc, state = finalize(searched.desc, searched.state, config.model.top_k, chosen=chosen,
                           init=config.search.finalize_init)
    pairs = {kind: getattr(searched.desc, kind).candidate.pairs for kind in chosen}
    notes = {"chosen": {kind: [list(pairs[kind][m]) for m in idx]
                        for kind, idx in chosen.items()}, "selection": selection}
    return desc, state, notes


def child_windows(config: Config) -> tuple[Window | None, Window | None]:
    """The learning-rate windows of a child's search and post-train phases: None (each
    phase its own schedule, restarting at its peak) or, with search.child_schedule
    continuous, consecutive parts of one schedule over both phases' epochs."""
    search = config.search
    if search.child_schedule == "per_phase":
        return None, None
    first, total = search.search_train.epochs, (search.search_train.epochs
                                                + search.post_train.epochs)
    return Window(0, total), Window(first, total)


def run_search(config: Config, parent_desc: dict, parent_weights: bytes,
               ctx: JobContext, *, selection: str = "alpha",
               claim: Claim = no_claims) -> TrialOutput:
    torch.manual_seed(ctx.seed)  # new weights depend on the trial, not the worker's past
    start = Stopwatch.begin()
    splits = load_splits(config.dataset, config.seed, keep_uint8=True)
    searched = search_phase(config, ModelDesc.from_dict(parent_desc), parent_weights,
                            splits, ctx)
    desc, state, notes = finalize_child(config, searched, selection, ctx.seed)
    phases = {"search_train": searched.result}
    owner = claim(desc.arch_hash())
    if owner is not None and selection == "alpha":
        found = _next_new_child(config, searched, claim)
        if found is not None:
            (desc, state, notes), owner = found, None
    if owner is not None:
        return _duplicate(desc, owner, phases, start, ctx, len(splits["train"]), notes)
    child = build_model(desc)
    child.load_state_dict(state)
    phases["post_train"] = train_phase(child, splits, config.search.post_train, ctx,
                                       window=child_windows(config)[1])
    return _output(desc, child, phases, start, ctx, len(splits["train"]), notes)


def _next_new_child(config: Config, searched: Searched, claim: Claim
                    ) -> tuple[ModelDesc, dict[str, torch.Tensor], dict] | None:
    """The child of the first of the next-best pair sets (`search.duplicate_retries` of
    them) whose model the run does not have yet, now claimed; None if every one is
    taken. Only finalize is repeated: the search phase is the one already paid for."""
    ranked = ranked_pairs(searched.desc, searched.state, scores=searched.scores)
    choices = next_best_choices(ranked, config.model.top_k)
    for retry, chosen in enumerate(islice(choices, config.search.duplicate_retries), 1):
        desc, state, notes = finalize_child(config, searched, "alpha", 0, chosen=chosen)
        if claim(desc.arch_hash()) is None:
            return desc, state, {**notes, "duplicate_retry": retry}
    return None


def _choose(searched: Searched, k: int, selection: str, seed: int) -> dict[str, list[int]]:
    if selection == "alpha":
        return select_pairs(searched.desc, searched.state, k, scores=searched.scores)
    if selection == "random":
        return random_pairs(searched.desc, k, torch.Generator().manual_seed(seed))
    raise ValueError(f"unknown selection {selection!r}")


def run_eval(config: Config, gallery_desc: dict, ctx: JobContext) -> TrialOutput:
    torch.manual_seed(ctx.seed)  # new weights depend on the trial, not the worker's past
    start = Stopwatch.begin()
    desc = build_eval(ModelDesc.from_dict(gallery_desc), config)
    splits = load_splits(config.dataset, config.seed, keep_uint8=True)
    model = build_model(desc)
    result = train_phase(model, splits, config.eval.train, ctx)
    return _output(desc, model, {"eval_train": result}, start, ctx, len(splits["train"]))


# ------------------------------------------------------------ one job per kind
# What the Ray task runs for each kind of job (search/kinds.py names them), all with
# one signature: the payload is what the driver built from the trial's JobSpec
# (engine/runner.py), `weights` the parent's when the kind inherits them.

def seed_job(config: Config, payload: dict, weights: bytes | None, ctx: JobContext,
             claim: Claim) -> TrialOutput:
    return run_seed(config, tuple(payload["macro"]), ctx, claim)


def search_job(config: Config, payload: dict, weights: bytes | None, ctx: JobContext,
               claim: Claim) -> TrialOutput:
    return run_search(config, payload["parent"], weights, ctx,
                      selection=payload["selection"], claim=claim)


def random_job(config: Config, payload: dict, weights: bytes | None, ctx: JobContext,
               claim: Claim) -> TrialOutput:
    return run_random(config, tuple(payload["macro"]), payload["cells"], ctx, claim)


def eval_job(config: Config, payload: dict, weights: bytes | None, ctx: JobContext,
             claim: Claim) -> TrialOutput:
    return run_eval(config, payload["parent"], ctx)   # nothing is deduplicated in eval


def train_phase(model: torch.nn.Module, splits: dict[str, TensorData], cfg: TrainConfig,
                ctx: JobContext, **kwargs) -> TrainResult:
    """One phase of a job: the trainer on the job's device and threads, under its
    memory guard."""
    guard = MemoryGuard(ctx.memory_limit_mb) if ctx.memory_limit_mb else None
    return train(model, splits, cfg, device=ctx.device, seed=ctx.seed,
                 cpu_threads=ctx.cpu_threads, epoch_callback=guard, **kwargs)


def _output(desc: ModelDesc, model: torch.nn.Module, phases: dict[str, TrainResult],
            start: Stopwatch, ctx: JobContext, n_train: int, notes: dict | None = None
            ) -> TrialOutput:
    # Latency on the job's own device (median of single-example passes), then the
    # weights travel back from the CPU.
    measured = cost(model, desc.input_shape, latency=True, device=ctx.device)
    model = model.cpu().eval()
    final = list(phases.values())[-1].final
    row = {"cells": desc.cells, "reductions": desc.reductions, "nodes": desc.nodes,
           "macs": int(measured["macs"]), "params": int(measured["params"]),
           "latency_ms": round(measured["latency_ms"], 4),
           "val_top1": final["val_top1"], "test_top1": final.get("test_top1"),
           "train_top1": final.get("train_top1"), **_spent(phases, start, ctx, n_train),
           "arch_hash": desc.arch_hash()}
    return TrialOutput(desc=desc.to_dict(), weights=weights_to_bytes(model.state_dict()),
                       row=row, history={k: r.to_dict() for k, r in phases.items()},
                       notes={**(notes or {}), **_timing(start)})


def _duplicate(desc: ModelDesc, owner: str, phases: dict[str, TrainResult], start: Stopwatch,
               ctx: JobContext, n_train: int, notes: dict | None = None) -> TrialOutput:
    """A trial that stops because `owner` trains its architecture: its cost so far."""
    measured = cost(build_model(desc), desc.input_shape)
    row = {"cells": desc.cells, "reductions": desc.reductions, "nodes": desc.nodes,
           "macs": int(measured["macs"]), "params": int(measured["params"]),
           **_spent(phases, start, ctx, n_train), "arch_hash": desc.arch_hash(),
           "duplicate_of": owner}
    return TrialOutput(desc=desc.to_dict(), weights=None, row=row,
                       history={k: r.to_dict() for k, r in phases.items()},
                       notes={**(notes or {}), **_timing(start)})


def _spent(phases: dict[str, TrainResult], start: Stopwatch, ctx: JobContext,
           n_train: int) -> dict:
    """What the trial cost: epochs, training examples, compute on its device."""
    epochs = sum(len(r.history) for r in phases.values())
    return {"epochs": epochs, "examples": epochs * n_train,
            "compute_s": start.compute_s(ctx), "device": device_name(ctx)}


def _timing(start: Stopwatch) -> dict:
    # Wall-clock start and end let a reader check how jobs overlapped on the cluster.
    finished_at = time.time()
    return {"started_at": finished_at - (time.perf_counter() - start.wall),
            "finished_at": finished_at}
