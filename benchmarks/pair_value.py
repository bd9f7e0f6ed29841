#!/usr/bin/env python
"""Does a pair score predict what a pair is worth? Every pair of a few parents, measured.

    python benchmarks/pair_value.py                         # digits, 6 parents
    python benchmarks/pair_value.py --conf petridish_shapes --out runs/pv_shapes
    python benchmarks/pair_value.py --parents 1,0,1@15 3,1,1@3 --pairs 12 --post-seeds 4

For each parent (a seed shape trained for a number of epochs: fitted at the config's
seed_train epochs, under-fitted at a few), one search phase (search_train, the L1 term
on the alphas: what a search job runs) is the *reference*. From it, each single
(input, op) pair of the normal cell (all of them, or a random subset: `--pairs`) is
finalized as a one-pair child — in a parent with reduction cells, the reduction cell
gets the same companion pair in every child: the reference phase's top |alpha| pair —
and post-trained (post_train) with `--post-seeds` seeds. A pair's **value** is its
children's mean validation accuracy (test accuracy is reported too). Every registered
pair score (petrinas/model_desc/pair_scores.py) is read from that same reference phase,
so the scores are compared on identical data; the data-reading ones on the first
training examples (what the search uses) and, as a diagnostic marked `@test`, on the
first test examples (data the search phase did not train on, and that the values are
not measured on). A second search phase of each parent with another seed gives the
rankings' stability. `--variant NAME:KEY=VALUE,...` adds a search phase of each parent
under other settings (a stronger alpha learning rate, say), whose scores are ranked
against the same pair values: the children inherit the reference phase's weights, so a
variant is judged on what its ranking says, not on weights of its own.

Printed, per parent and pooled: Spearman(score, value), its mean over parents with a
permutation p (scores shuffled within each parent) and a bootstrap interval over
parents; the top-k regret against the oracle (the k best pairs by value) and the gain
over a random pair (the mean pair); the between-pair sd of value against the
post-training noise sd (the sd of one pair's children over seeds): where the first is
not well above the second there is nothing to predict; the rank correlation and top-3
overlap between the two search phases.

Resumable: parents, phases and each child are saved under --out the moment they are
done (OUT/parents/, OUT/phases/, OUT/values.tsv), and a rerun of the same command skips
them. Each job is a Ray task on one CPU thread.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

STUDIED = "normal"          # the cell kind whose pairs are measured
TOP_K = (1, 3)
PERMUTATIONS = 10_000
BOOTSTRAP_SAMPLES = 10_000
VALUE_COLUMNS = ["parent", "pair", "input", "op", "post_seed", "val_top1", "test_top1",
                 "val_loss", "macs"]


# ------------------------------------------------------------------ the arithmetic

def ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank."""
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="mergesort")
    out = np.empty(len(values))
    sorted_values = values[order]
    start = 0
    while start < len(values):
        stop = start
        while stop + 1 < len(values) and sorted_values[stop + 1] == sorted_values[start]:
            stop += 1
        out[order[start:stop + 1]] = (start + stop) / 2 + 1
        start = stop + 1
    return out


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (Pearson's on tie-averaged ranks); nan if either
    side is constant."""
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float((ra * rb).sum() / denominator) if denominator > 0 else float("nan")


def permutation_p(scores: Sequence[Sequence[float]], values: Sequence[Sequence[float]], *,
                  samples: int = PERMUTATIONS, seed: int = 0) -> float:
    """One-sided p of the mean over parents of Spearman(score, value) under the null
    that within each parent the scores are unrelated to the values: each parent's
    scores are shuffled; (1 + #shuffles at least as large) / (1 + samples). Parents
    whose scores or values are constant (no correlation defined) are left out."""
    rng = np.random.default_rng(seed)
    observed, shuffled = [], []
    for s, v in zip(scores, values):
        rs, rv = ranks(s) - (len(s) + 1) / 2, ranks(v) - (len(v) + 1) / 2
        denominator = np.sqrt((rs ** 2).sum() * (rv ** 2).sum())
        if denominator == 0:
            continue
        observed.append((rs @ rv) / denominator)
        # Shuffling the scores shuffles their ranks: one permutation per row.
        perms = rng.permuted(np.tile(rs, (samples, 1)), axis=1)
        shuffled.append(perms @ rv / denominator)
    if not observed:
        return float("nan")
    at_least = (np.mean(shuffled, axis=0) >= np.mean(observed) - 1e-12).sum()
    return float((1 + at_least) / (1 + samples))


def bootstrap_mean(per_parent: Sequence[float], *, samples: int = BOOTSTRAP_SAMPLES,
                   seed: int = 0) -> tuple[float, float, float]:
    """(mean, 2.5th, 97.5th percentile) of the mean over parents, parents resampled."""
    x = np.asarray([v for v in per_parent if np.isfinite(v)], dtype=float)
    if not len(x):
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(len(x), size=(samples, len(x)))].mean(axis=1)
    return float(x.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


@dataclass(frozen=True)
class Spread:
    noise_sd: float       # one pair's children over post-training seeds (pooled)
    value_sd: float       # the pairs' values (each a mean over seeds)
    between_sd: float     # value_sd without the noise the seed means still hold

    @property
    def ratio(self) -> float:
        return self.between_sd / self.noise_sd if self.noise_sd > 0 else float("inf")


def pooled_ratio(spreads: Sequence[Spread]) -> float:
    """sqrt(mean between-pair variance / mean noise variance) over parents."""
    between = np.mean([s.between_sd ** 2 for s in spreads])
    noise = np.mean([s.noise_sd ** 2 for s in spreads])
    return float((between / noise) ** 0.5) if noise > 0 else float("inf")


def spread(children: Sequence[Sequence[float]]) -> Spread:
    """Per pair, its children's accuracies (one per post-training seed, >= 2 each)."""
    noise_var = float(np.mean([np.var(c, ddof=1) for c in children]))
    means = [np.mean(c) for c in children]
    seeds = np.mean([len(c) for c in children])
    value_var = float(np.var(means, ddof=1))
    return Spread(noise_sd=noise_var ** 0.5, value_sd=value_var ** 0.5,
                  between_sd=max(value_var - noise_var / seeds, 0.0) ** 0.5)


def top_k(scores: Sequence[float], values: Sequence[float], k: int) -> dict[str, float]:
    """The mean value of the k pairs a score ranks first (ties: the first listed), of
    the k best pairs (the oracle), and of all pairs (a random pick's expectation)."""
    scores, values = np.asarray(scores, float), np.asarray(values, float)
    picked = np.argsort(-scores, kind="stable")[:k]
    best = np.sort(values)[::-1][:k]
    return {"picked": float(values[picked].mean()), "oracle": float(best.mean()),
            "random": float(values.mean())}


def within_groups(scores: Sequence[float], values: Sequence[float],
                  groups: Sequence[int]) -> float:
    """The mean Spearman(score, value) within each group (pairs reading one input
    state) of at least 3 pairs whose correlation is defined; nan if none."""
    rhos = []
    for g in sorted(set(groups)):
        members = [i for i, h in enumerate(groups) if h == g]
        if len(members) >= 3:
            rhos.append(spearman([scores[i] for i in members], [values[i] for i in members]))
    rhos = [r for r in rhos if np.isfinite(r)]
    return float(np.mean(rhos)) if rhos else float("nan")


def overlap(a: Sequence[float], b: Sequence[float], k: int = 3) -> float:
    """The share of the top k by `a` that are in the top k by `b`."""
    top_a = set(np.argsort(-np.asarray(a, float), kind="stable")[:k].tolist())
    top_b = set(np.argsort(-np.asarray(b, float), kind="stable")[:k].tolist())
    return len(top_a & top_b) / k


# ------------------------------------------------------------------------ the jobs

def _setup(config, seed: int):
    from petrinas.data import load_splits
    from petrinas.train.pipeline import JobContext

    return JobContext(seed=seed, cpu_threads=1), load_splits(config.dataset, config.seed,
                                                             keep_uint8=True)


def train_parent(config, shape: tuple[int, int, int], epochs: int) -> dict:
    """A seed model of `shape` trained `epochs` epochs of seed_train."""
    import torch

    from petrinas.model_desc import build_model, build_seed
    from petrinas.model_desc.model import weights_to_bytes
    from petrinas.train.pipeline import train_phase

    ctx, splits = _setup(config, seed=0)
    torch.manual_seed(ctx.seed)
    desc = build_seed(config, *shape)
    model = build_model(desc)
    result = train_phase(model, splits, replace(config.search.seed_train, epochs=epochs), ctx)
    return {"desc": desc.to_dict(), "weights": weights_to_bytes(model.state_dict()),
            "final": result.final}


def search_and_score(config, parent: dict, phase_seed: int) -> dict:
    """One search phase of `parent`, and every registered score of its pairs, summed over
    each kind's cells (what finalize ranks by), read from that phase."""
    import torch

    from petrinas.model_desc import build_model
    from petrinas.model_desc.desc import ModelDesc
    from petrinas.model_desc.model import weights_to_bytes
    from petrinas.model_desc.pair_scores import PAIR_SCORES, Evidence
    from petrinas.train.pipeline import score_batch, search_phase

    ctx, splits = _setup(config, phase_seed)
    torch.manual_seed(ctx.seed)
    searched = search_phase(config, ModelDesc.from_dict(parent["desc"]), parent["weights"],
                            splits, replace(ctx, seed=phase_seed))
    scores = {}
    for split, suffix in (("train", ""), ("test", "@test")):
        model = build_model(searched.desc)
        model.load_state_dict(searched.state)
        evidence = Evidence(model, score_batch(splits[split], model))
        for name, score in PAIR_SCORES.items():
            if suffix and not score.reads_data:
                continue
            per_cell = score.fn(evidence)
            scores[name + suffix] = {kind: _kind_total(searched.desc, per_cell, kind)
                                     for kind in searched.desc.used_kinds}
    return {"desc": searched.desc.to_dict(), "state": weights_to_bytes(searched.state),
            "scores": scores, "final": searched.result.final}


def _kind_total(desc, per_cell: dict, kind: str) -> list[float]:
    total = None
    for i in range(desc.cells):
        if (i in desc.reduction_indices) == (kind == "reduce"):
            total = per_cell[i].clone() if total is None else total + per_cell[i]
    return [float(v) for v in total]


def pair_child(config, phase_desc: dict, phase_state: bytes, chosen: dict[str, list[int]],
               post_seed: int) -> dict:
    """The one-pair child of the phase, post-trained with its own seed."""
    import torch

    from petrinas.model_desc import build_model
    from petrinas.model_desc.cost import cost
    from petrinas.model_desc.desc import ModelDesc
    from petrinas.model_desc.grow import finalize
    from petrinas.model_desc.model import weights_from_bytes
    from petrinas.train.pipeline import child_windows, train_phase

    ctx, splits = _setup(config, post_seed)
    desc, state = finalize(ModelDesc.from_dict(phase_desc), weights_from_bytes(phase_state),
                           1, chosen=chosen)
    torch.manual_seed(post_seed)
    model = build_model(desc)
    model.load_state_dict(state)
    result = train_phase(model, splits, config.search.post_train, ctx,
                         window=child_windows(config)[1])
    return {"val_top1": result.final["val_top1"], "test_top1": result.final["test_top1"],
            "val_loss": result.final["val_loss"],
            "macs": int(cost(model, desc.input_shape)["macs"])}


# ------------------------------------------------------------------------ the plan

def parse_parents(specs: Sequence[str], fitted: int) -> list[tuple[tuple[int, int, int], int]]:
    """'CELLS,REDUCTIONS,NODES@EPOCHS' (EPOCHS default: the config's seed_train epochs)."""
    out = []
    for spec in specs:
        shape, _, epochs = spec.partition("@")
        out.append((tuple(int(v) for v in shape.split(",")), int(epochs or fitted)))
    return out


def default_parents(fitted: int) -> list[str]:
    """Three seed shapes (with and without a reduction, one and two nodes), each fitted
    and under-fitted (a fifth of the epochs)."""
    under = max(1, fitted // 5)
    return [f"{shape}@{epochs}" for epochs in (fitted, under)
            for shape in ("1,0,1", "2,0,2", "3,1,1")]


def parent_name(shape: tuple[int, int, int], epochs: int) -> str:
    return f"c{shape[0]}r{shape[1]}n{shape[2]}e{epochs}"


def studied_pairs(phase: dict, subset: int, rng_seed: int) -> list[int]:
    """The normal cell's non-`none` pairs (all, or `subset` of them drawn at random)."""
    pairs = phase["desc"][STUDIED]["candidate"]
    ops = [op for _ in pairs["inputs"] for op in pairs["ops"]]
    usable = [m for m, op in enumerate(ops) if op != "none"]
    if subset and subset < len(usable):
        rng = np.random.default_rng(rng_seed)
        usable = sorted(rng.choice(usable, size=subset, replace=False).tolist())
    return usable


def companion(phase: dict) -> dict[str, list[int]]:
    """The fixed pair of every other kind the model uses: its top |alpha| pair."""
    out = {}
    for kind, totals in phase["scores"]["alpha"].items():
        if kind == STUDIED:
            continue
        cand = phase["desc"][kind]["candidate"]
        ops = [o for _ in cand["inputs"] for o in cand["ops"]]
        usable = [m for m, op in enumerate(ops) if op != "none"]
        out[kind] = [max(usable, key=lambda m: (totals[m], -m))]
    return out


# ---------------------------------------------------------------------------- report

def with_variants(reference: dict, variants: dict[str, dict]) -> dict:
    """The reference phase with each variant phase's scores added as SCORE[NAME]."""
    scores = dict(reference["scores"])
    for name, phase in variants.items():
        scores.update({f"{score}[{name}]": kinds for score, kinds in phase["scores"].items()
                       if not score.endswith("@test")})
    return {**reference, "scores": scores}


def analyse(phases: dict[str, list[dict]], values: list[dict]) -> dict:
    """Per parent and pooled figures (see the module's docstring) from the saved phases
    and the values.tsv rows."""
    by_pair: dict[tuple[str, int], list[dict]] = {}
    for row in values:
        by_pair.setdefault((row["parent"], int(row["pair"])), []).append(row)
    parents, pooled = {}, {}
    for name, (reference, *others) in phases.items():
        pairs = sorted(m for p, m in by_pair if p == name)
        if len(pairs) < 3:
            continue
        children = [[float(r["val_top1"]) for r in by_pair[(name, m)]] for m in pairs]
        tests = [np.mean([float(r["test_top1"]) for r in by_pair[(name, m)]]) for m in pairs]
        value = [float(np.mean(c)) for c in children]
        entry = {"pairs": len(pairs), "spread": spread(children), "scores": {}}
        inputs = [int(r["input"]) for r in (by_pair[(name, m)][0] for m in pairs)]
        for score, kinds in reference["scores"].items():
            s = [kinds[STUDIED][m] for m in pairs]
            stability = {}
            if others and score in others[0]["scores"]:
                t = [others[0]["scores"][score][STUDIED][m] for m in pairs]
                stability = {"stable_rho": spearman(s, t), "stable_top3": overlap(s, t)}
            entry["scores"][score] = {
                "rho": spearman(s, value), "rho_test": spearman(s, tests),
                "rho_state": within_groups(s, value, inputs),
                **{f"top{k}": top_k(s, value, k) for k in TOP_K}, **stability,
                "s": s, "v": value}
        parents[name] = entry
    for score in next(iter(parents.values()))["scores"] if parents else []:
        rows = [p["scores"][score] for p in parents.values()]
        pooled[score] = {
            "rho": bootstrap_mean([r["rho"] for r in rows]),
            "p": permutation_p([r["s"] for r in rows], [r["v"] for r in rows]),
            "rho_test": bootstrap_mean([r["rho_test"] for r in rows]),
            "rho_state": bootstrap_mean([r["rho_state"] for r in rows]),
            **{f"regret{k}": bootstrap_mean([r[f"top{k}"]["oracle"] - r[f"top{k}"]["picked"]
                                             for r in rows]) for k in TOP_K},
            **{f"gain{k}": bootstrap_mean([r[f"top{k}"]["picked"] - r[f"top{k}"]["random"]
                                           for r in rows]) for k in TOP_K},
            "stability": bootstrap_mean([r.get("stable_rho", float("nan")) for r in rows]),
            "overlap3": bootstrap_mean([r.get("stable_top3", float("nan")) for r in rows])}
    return {"parents": parents, "pooled": pooled}


def _ci(triple: tuple[float, float, float], digits: int = 3) -> str:
    mean, lo, hi = triple
    if not np.isfinite(mean):   # not measured (a variant has one search phase: no stability)
        return "–"
    return f"{mean:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"


def report(analysis: dict, meta: dict) -> str:
    parents, pooled = analysis["parents"], analysis["pooled"]
    lines = [f"{meta['conf']}: {len(parents)} parents, {meta['post_seeds']} post-training "
             f"seeds per pair, value = the one-pair child's validation accuracy", "",
             "| parent | parent val. | pairs | between-pair sd | noise sd | ratio |",
             "|:---|---:|---:|---:|---:|---:|"]
    if meta.get("variants"):
        lines[1:1] = ["Variants (scores marked [NAME]): " + "; ".join(
            f"{name} = {sets.replace(',', ', ')}" for name, _, sets in
            (v.partition(":") for v in meta["variants"])), ""]
    for name, p in parents.items():
        sp = p["spread"]
        lines.append(f"| {name} | {meta['parent_val'].get(name, float('nan')):.4f} | "
                     f"{p['pairs']} | {sp.between_sd:.4f} | {sp.noise_sd:.4f} | "
                     f"{sp.ratio:.2f} |")
    ratios = [p["spread"].ratio for p in parents.values()]
    lines += ["", f"Between-pair sd / noise sd: median over parents {np.median(ratios):.2f}, "
                  f"pooled {pooled_ratio([p['spread'] for p in parents.values()]):.2f} "
                  "(>= 2: the pairs differ well beyond post-training noise)."
              if ratios else "",
              "", "Per parent, Spearman(score, value):", "",
              "| score | " + " | ".join(parents) + " |",
              "|:---|" + "---:|" * len(parents)]
    for score in pooled:
        lines.append(f"| {score} | " + " | ".join(
            f"{p['scores'][score]['rho']:+.2f}" for p in parents.values()) + " |")
    lines += ["", "Pooled over parents (mean [95 % bootstrap over parents]; p: permutation, "
                  "one-sided):", "",
              "| score | Spearman vs val. | p | Spearman vs test | within a state | "
              "top-1 gain over random | top-1 regret | top-3 gain over random | "
              "top-3 regret | stability ρ | top-3 overlap |",
              "|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for score, q in pooled.items():
        lines.append(f"| {score} | {_ci(q['rho'], 2)} | {q['p']:.4f} | "
                     f"{_ci(q['rho_test'], 2)} | "
                     f"{_ci(q['rho_state'], 2)} | "
                     f"{_ci(q['gain1'], 4)} | {_ci(q['regret1'], 4)} | {_ci(q['gain3'], 4)} | "
                     f"{_ci(q['regret3'], 4)} | {_ci(q['stability'], 2)} | "
                     f"{q['overlap3'][0]:.2f} |".replace("nan", "–"))
    chance = np.mean([3 / p["pairs"] for p in parents.values()]) if parents else float("nan")
    lines += ["", f"Top-3 overlap by chance: {chance:.2f}. Gains and regrets are in "
                  f"validation accuracy; the oracle is the best pairs by their measured value "
                  f"(itself noisy, so its regret is an upper bound)."]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ main

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--conf", default="petridish_digits", help="config file or name")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[],
                   metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--parents", nargs="+", metavar="C,R,N@EPOCHS",
                   help="parent seed shapes and their training epochs (default: 1,0,1 "
                        "2,0,2 3,1,1, each fitted and at a fifth of the epochs)")
    p.add_argument("--pairs", type=int, default=0,
                   help="a random subset of this many pairs per parent (0: every pair)")
    p.add_argument("--post-seeds", type=int, default=3)
    p.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE[,...]",
                   help="another search phase of each parent (the reference's seed) with "
                        "these overrides, e.g. alr:search.alpha_lr=0.5; its scores are "
                        "reported as SCORE[NAME] against the reference's pair values. "
                        "A variant can be added to a finished benchmark")
    p.add_argument("--jobs", type=int, default=2, help="jobs at once (CPUs)")
    p.add_argument("--out", default="runs/pair_value")
    args = p.parse_args(argv)
    if args.post_seeds < 2:
        p.error("--post-seeds: at least 2 (the noise sd needs two children per pair)")
    return args


class Store:
    """OUT/: the benchmark's settings, then every job's result, the moment it is done."""

    def __init__(self, out: Path, meta: dict):
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        settings = out / "settings.json"
        if settings.is_file() and json.loads(settings.read_text()) != meta:
            raise SystemExit(f"error: {out} holds a pair_value benchmark with other "
                             f"settings ({settings}); give another --out")
        settings.write_text(json.dumps(meta, indent=1))
        self.values_path = out / "values.tsv"
        self.values = list(csv.DictReader(open(self.values_path), delimiter="\t")) \
            if self.values_path.is_file() else []

    def folder(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)

    def load(self, folder: Path) -> dict | None:
        if not (folder / "done.json").is_file():
            return None
        data = json.loads((folder / "done.json").read_text())
        for key in ("weights", "state"):
            if (folder / f"{key}.pt").is_file():
                data[key] = (folder / f"{key}.pt").read_bytes()
        return data

    def save(self, folder: Path, data: dict) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for key in ("weights", "state"):
            if key in data:
                (folder / f"{key}.pt").write_bytes(data[key])
        plain = {k: v for k, v in data.items() if k not in ("weights", "state")}
        (folder / "done.json.tmp").write_text(json.dumps(plain))
        (folder / "done.json.tmp").replace(folder / "done.json")  # written last

    def add_value(self, row: dict) -> None:
        new = not self.values_path.is_file()
        with open(self.values_path, "a", newline="") as f:
            writer = csv.DictWriter(f, VALUE_COLUMNS, delimiter="\t")
            if new:
                writer.writeheader()
            writer.writerow(row)
        self.values.append({k: str(v) for k, v in row.items()})


class Jobs:
    """Ray tasks of one CPU thread each, on the Ray instance that jobs_ray gives; Ray
    starts with the first job (a finished benchmark's rerun only reports)."""

    def __init__(self, cpus: int):
        self.cpus, self.started = cpus, time.perf_counter()
        self._ray = contextlib.ExitStack()

    def submit(self, fn, *args):
        import ray

        from petrinas.engine.jobs import jobs_ray

        if not ray.is_initialized():
            self._ray.enter_context(jobs_ray(self.cpus))
        return ray.remote(num_cpus=1, max_retries=0)(fn).remote(*args)

    def wait_all(self, jobs: dict, what: str, keep) -> None:
        """Wait for every job (ref -> key); `keep(key, result)` saves each the moment it
        finishes, so an interrupted benchmark loses no finished job."""
        import ray

        total = len(jobs)
        while jobs:
            [ref], _ = ray.wait(list(jobs), num_returns=1)
            key = jobs.pop(ref)
            keep(key, ray.get(ref))
            print(f"  {what} {key}: done ({total - len(jobs)}/{total}, "
                  f"{(time.perf_counter() - self.started) / 60:.1f} min)", flush=True)

    def close(self) -> None:
        """Shuts down the Ray instance the first job started, if it did."""
        self._ray.close()


def ensure(store: Store, jobs: Jobs, wanted: dict, what: str) -> dict:
    """key -> the result saved in its folder, or else made by its job and saved.
    `wanted`: key -> (folder, a function submitting the job)."""
    found = {key: store.load(folder) for key, (folder, _) in wanted.items()}

    def keep(key, result):
        store.save(wanted[key][0], result)
        found[key] = result
    jobs.wait_all({submit(): key for key, (_, submit) in wanted.items()
                   if found[key] is None}, what, keep)
    return found


def measure_values(store: Store, jobs: Jobs, config, phases: dict, args) -> None:
    """Every studied pair's one-pair child of each parent's reference phase, for each
    post-training seed not in values.tsv yet."""
    import ray

    done = {(r["parent"], int(r["pair"]), int(r["post_seed"])) for r in store.values}
    refs = {}
    for k, (name, reference) in enumerate(phases.items()):
        cand = reference["desc"][STUDIED]["candidate"]
        pairs = [(i, o) for i in cand["inputs"] for o in cand["ops"]]
        todo = [(m, seed) for m in studied_pairs(reference, args.pairs, rng_seed=k)
                for seed in range(args.post_seeds) if (name, m, seed) not in done]
        state = ray.put(reference["state"]) if todo else None  # shared by its children
        for m, seed in todo:
            chosen = {STUDIED: [m], **companion(reference)}
            refs[jobs.submit(pair_child, config, reference["desc"], state, chosen,
                             seed)] = (name, m, pairs[m], seed)

    def keep(key, result):
        name, m, (i, op), seed = key
        store.add_value({"parent": name, "pair": m, "input": i, "op": op,
                         "post_seed": seed, **result})
    jobs.wait_all(refs, "child", keep)


def main(argv=None) -> int:
    args = parse_args(argv)
    from petrinas.config_loader import load_config

    config = load_config(args.conf, args.overrides)
    fitted = config.search.seed_train.epochs
    specs = args.parents or default_parents(fitted)
    parents = dict(zip((parent_name(*p) for p in parse_parents(specs, fitted)),
                       parse_parents(specs, fitted)))
    meta = {"conf": args.conf, "overrides": args.overrides, "parents": specs,
            "pairs": args.pairs, "post_seeds": args.post_seeds}
    store, jobs = Store(Path(args.out), meta), Jobs(args.jobs)
    trained = ensure(store, jobs, {
        n: (store.folder("parents", n), lambda shape=shape, epochs=epochs:
            jobs.submit(train_parent, config, shape, epochs))
        for n, (shape, epochs) in parents.items()}, "parent")
    phases = ensure(store, jobs, {
        (n, s): (store.folder("phases", n, f"s{s}"), lambda n=n, s=s:
                 jobs.submit(search_and_score, config, trained[n], s))
        for n in parents for s in (0, 1)}, "search phase")
    variants = {name: load_config(args.conf, [*args.overrides, *sets.split(",")])
                for name, _, sets in (v.partition(":") for v in args.variant)}
    extra = ensure(store, jobs, {
        (n, v): (store.folder("phases", n, f"v-{v}"), lambda n=n, v=v:
                 jobs.submit(search_and_score, variants[v], trained[n], 0))
        for n in parents for v in variants}, "variant phase")
    measure_values(store, jobs, config, {n: phases[(n, 0)] for n in parents}, args)
    jobs.close()
    references = {n: with_variants(phases[(n, 0)], {v: extra[(n, v)] for v in variants})
                  for n in parents}
    analysis = analyse({n: [references[n], phases[(n, 1)]] for n in parents}, store.values)
    meta["parent_val"] = {n: trained[n]["final"]["val_top1"] for n in parents}
    meta["variants"] = args.variant   # reported, so a table names what each [NAME] set
    text = report(analysis, meta)
    (store.out / "pair_value.md").write_text(text)
    print(f"\nwall time {(time.perf_counter() - jobs.started) / 60:.1f} min\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
