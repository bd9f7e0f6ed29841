#!/usr/bin/env python
"""Where does a grown child's accuracy come from? Paired, per child, over run seeds.

    python benchmarks/inheritance.py                       # digits default, seeds 0-4
    python benchmarks/inheritance.py --conf benchmark_digits_cheap --out runs/inh_cheap
    python benchmarks/inheritance.py --runs runs/inheritance --out runs/inh_p4 \
        --replay-set search.post_train.epochs=4     # other child training, same children

For each run seed, an ordinary search of the config (`scripts/search.py`, resumable) runs
until it has grown `--children` children. Then, for each grown child, from its parent's
trained weights and the child's own trial seed, five arms are trained side by side:

  child    the parent grown, search phase, top-k |alpha| pairs finalized, post-trained:
           what the search does (retrained here, so every arm runs in the same process)
  random   the same parent and the *same* search phase (one phase, finalized twice), k
           random non-`none` pairs, post-trained the same way
  scratch  the child's architecture from fresh weights, trained for the child's epochs
           with the child's two phase configs (search_train, then post_train)
  scratch_total  the child's architecture from fresh weights, trained for the epochs of
           the child's whole lineage (its seed's, every ancestor's and its own) in one
           seed_train schedule: what the compute spent on the child would buy without
           inheritance
  parent   the parent without growth, trained for the same two phases

child − scratch is what inheritance buys per child, child − scratch_total what it buys
for the compute the lineage spent (counted in epochs; the arms' CPU seconds are
reported beside), child − parent what the new node buys, and child − random what the
pair score's choice buys. The child arm finalizes the pairs the search's own child
recorded (a child grown with search.duplicate_retries is not the top-k), and `random`
the same search phase's random pairs. Each difference is paired per child; its 95 %
interval is a bootstrap that resamples run seeds (a child's siblings share their run, so
children are not independent draws). Accuracies are on validation (the split the search
selects on) and test. Every arm's jobs are Ray tasks of one CPU thread each.

With `--replay-set`, the arms train with those overrides on top of the runs' configs
while the searches (from `--runs`, made there if missing) stay as they are: the same
parents and child seeds under another child training, paired child for child with a
benchmark without it.

Writes OUT/children.tsv (one row per child and arm, appended as they finish, so an
interrupted benchmark resumes) and OUT/inheritance.md (the table).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ARMS = ("child", "random", "scratch", "scratch_total", "parent")
CONTRASTS = (("child", "scratch", "inheritance (child − scratch)"),
             ("child", "scratch_total",
              "inheritance at equal compute (child − scratch_total)"),
             ("child", "parent", "the new node (child − parent)"),
             ("child", "random", "the pair score's choice (child − random)"))
METRICS = ("val_top1", "test_top1")
COLUMNS = ["seed", "trial_id", "parent_id", "arm", "val_top1", "test_top1", "epochs",
           "macs", "search_val_top1", "first_post_val_top1", "same_pairs", "compute_s",
           "lineage_compute_s", "pairs"]
BOOTSTRAP_SAMPLES = 10_000


# ------------------------------------------------------------------ the arithmetic

def clustered_bootstrap(diffs_by_run: Sequence[Sequence[float]], *,
                        samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
                        ) -> tuple[float, float, float]:
    """(mean over all children, 2.5th, 97.5th percentile) of the mean paired difference,
    resampling whole runs with replacement. With one run, the children themselves are
    resampled (an interval for that run only)."""
    runs = [np.asarray(d, dtype=float) for d in diffs_by_run if len(d)]
    if not runs:
        return float("nan"), float("nan"), float("nan")
    everything = np.concatenate(runs)
    rng = np.random.default_rng(seed)
    if len(runs) == 1:
        picks = rng.integers(len(everything), size=(samples, len(everything)))
        means = everything[picks].mean(axis=1)
    else:
        sums = np.array([r.sum() for r in runs])
        counts = np.array([len(r) for r in runs])
        picks = rng.integers(len(runs), size=(samples, len(runs)))
        means = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    return (float(everything.mean()), float(np.percentile(means, 2.5)),
            float(np.percentile(means, 97.5)))


def paired(rows: Iterable[dict], a: str, b: str, metric: str) -> dict[int, list[float]]:
    """Per run seed, the differences a − b of `metric` over the children that have both."""
    by_child: dict[tuple[int, str], dict[str, float]] = {}
    for row in rows:
        value = (math.log10(float(row["macs"])) if metric == "log10_macs"
                 else float(row[metric]))
        by_child.setdefault((int(row["seed"]), row["trial_id"]), {})[row["arm"]] = value
    out: dict[int, list[float]] = {}
    # log10_macs: the geometric mean of the cost ratio is 10 ** mean difference
    for (seed, _), arms in sorted(by_child.items()):
        if a in arms and b in arms:
            out.setdefault(seed, []).append(arms[a] - arms[b])
    return out


def contrast(rows: Sequence[dict], a: str, b: str) -> str | None:
    """Arm a − arm b over the children that have both, as the table cells "children
    (runs) | Δ val. [CI] | wins | Δ test [CI]"; None without a pair."""
    cells = {}
    for metric in METRICS:
        diffs = paired(rows, a, b, metric)
        mean, lo, hi = clustered_bootstrap(list(diffs.values()))
        cells[metric] = (diffs, f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}]")
    diffs, val = cells["val_top1"]
    flat = [d for ds in diffs.values() for d in ds]
    if not flat:
        return None
    return (f"{len(flat)} ({len(diffs)}) | {val} | {sum(d > 0 for d in flat)}/{len(flat)} | "
            f"{cells['test_top1'][1]}")


def table(rows: Sequence[dict]) -> str:
    """The markdown table: every contrast on validation and test accuracy, and on cost
    (a random choice of pairs can build a cheaper or a costlier node than |alpha|'s)."""
    lines = ["| what it measures | children (runs) | Δ val. acc. [95 % CI] | wins | "
             "Δ test acc. [95 % CI] | MACs ratio |", "|:---|---:|---:|---:|---:|---:|"]
    for a, b, label in CONTRASTS:
        log_ratio = [d for ds in paired(rows, a, b, "log10_macs").values() for d in ds]
        cells = contrast(rows, a, b) or "0 (0) | - | - | -"
        lines.append(f"| {label} | {cells} | {10 ** np.mean(log_ratio):.2f}× |")
    return "\n".join(lines)


def against(rows: Sequence[dict], other: Sequence[dict], name: str) -> str:
    """Each arm here against the same arm of another benchmark of the same children (its
    rows' arms renamed `arm@name`), paired child for child."""
    lines = [f"| arm: here − {name} | children (runs) | Δ val. acc. [95 % CI] | wins | "
             f"Δ test acc. [95 % CI] |", "|:---|---:|---:|---:|---:|"]
    merged = [*rows, *({**r, "arm": f"{r['arm']}@{name}"} for r in other)]
    for arm in ARMS:
        found = contrast(merged, arm, f"{arm}@{name}")
        if found:
            lines.append(f"| {arm} | {found} |")
    return "\n".join(lines)


def arm_means(rows: Sequence[dict]) -> str:
    """Mean accuracy, epochs and compute of each arm (the child's with and without its
    ancestors'), and the child's drop into post-training."""
    lines = ["| arm | val. acc. | test acc. | epochs | compute (CPU s) |",
             "|:---|---:|---:|---:|---:|"]
    for arm in ARMS:
        mine = [r for r in rows if r["arm"] == arm]
        if mine:
            mean = {k: np.mean([float(r[k]) for r in mine])
                    for k in ("val_top1", "test_top1", "epochs", "compute_s")}
            lines.append(f"| {arm} | {mean['val_top1']:.4f} | {mean['test_top1']:.4f} | "
                         f"{mean['epochs']:.0f} | {mean['compute_s']:.1f} |")
            if arm == "child":
                total = np.mean([float(r["compute_s"]) + float(r["lineage_compute_s"])
                                 for r in mine])
                lines.append(f"| child with its ancestors | | | | {total:.1f} |")
    children = [r for r in rows if r["arm"] == "child"]
    if children:
        drops = [float(r["search_val_top1"]) - float(r["first_post_val_top1"])
                 for r in children]
        same = sum(r["same_pairs"] == "True" for r in children)
        lines.append("")
        lines.append(f"Validation accuracy lost from the end of the search phase to the "
                     f"first post-training epoch: median {np.median(drops):.3f} "
                     f"(range {min(drops):.3f} to {max(drops):.3f}). Random choice drew "
                     f"the |alpha| pairs in {same} of {len(children)} children.")
    return "\n".join(lines)


# ------------------------------------------------------------------- the jobs

def replay_child(config, parent_desc: dict, parent_weights: bytes, child_seed: int,
                 chosen: dict[str, list], lineage_epochs: int | None = None
                 ) -> dict[str, dict]:
    """The arms of one child (see the module's docstring), on one CPU thread. `chosen`:
    the pairs the search's child recorded (notes["chosen"]): not always the top-k.
    `lineage_epochs`: the scratch_total arm's epochs; None: no such arm. Each arm's
    `compute_s` is the CPU seconds it took (the search phase counts for both arms that
    finalize it); the child and random arms name their `pairs`."""
    import torch

    from petrinas.data import load_splits
    from petrinas.model_desc.cost import cost
    from petrinas.model_desc.desc import ModelDesc
    from petrinas.model_desc.grow import pair_indices
    from petrinas.model_desc.model import build_model, weights_from_bytes
    from petrinas.train.pipeline import (JobContext, child_windows, finalize_child,
                                         search_phase, train_phase)

    ctx = JobContext(seed=child_seed, cpu_threads=1)
    search = config.search
    windows = child_windows(config)  # the child's learning rate, for every arm
    splits = load_splits(config.dataset, config.seed, keep_uint8=True)
    parent = ModelDesc.from_dict(parent_desc)
    torch.manual_seed(ctx.seed)
    started = time.process_time()
    searched = search_phase(config, parent, parent_weights, splits, ctx)
    search_s = time.process_time() - started
    recorded = pair_indices(searched.desc, chosen)
    out, picked = {}, {}
    for arm, selection in (("child", "alpha"), ("random", "random")):
        started = time.process_time()
        desc, state, notes = finalize_child(config, searched, selection, ctx.seed,
                                            chosen=recorded if arm == "child" else None)
        picked[arm] = (desc, notes["chosen"])
        model = build_model(desc)
        model.load_state_dict(state)
        post = train_phase(model, splits, search.post_train, ctx, window=windows[1])
        out[arm] = _scores(post, [searched.result, post],
                           search_s + time.process_time() - started)
        out[arm]["first_post_val_top1"] = post.history[0].val_top1 if post.history else ""
        out[arm]["macs"] = int(cost(model, desc.input_shape)["macs"])
        out[arm]["pairs"] = json.dumps(notes["chosen"], separators=(",", ":"))
    child_desc = picked["child"][0]
    plans = {"scratch": (child_desc, [(search.search_train, windows[0]),
                                      (search.post_train, windows[1])]),
             "parent": (parent, [(search.search_train, windows[0]),
                                 (search.post_train, windows[1])])}
    if lineage_epochs is not None:
        plans["scratch_total"] = (child_desc, [(replace(search.seed_train,
                                                        epochs=lineage_epochs), None)])
    for arm, (desc, phases) in plans.items():
        torch.manual_seed(ctx.seed)
        started = time.process_time()
        net = build_model(desc)
        if arm == "parent":
            net.load_state_dict(weights_from_bytes(parent_weights, "parent weights"))
        results = [train_phase(net, splits, phase, ctx, window=window)
                   for phase, window in phases]
        out[arm] = _scores(results[-1], results, time.process_time() - started)
        out[arm]["macs"] = int(cost(net, desc.input_shape)["macs"])
    same = picked["child"][1] == picked["random"][1]
    for arm in out:
        out[arm]["search_val_top1"] = searched.result.final["val_top1"]
        out[arm]["same_pairs"] = same
    return out


def _scores(last, phases, compute_s: float) -> dict:
    return {"val_top1": last.final["val_top1"], "test_top1": last.final["test_top1"],
            "epochs": sum(len(p.history) for p in phases), "compute_s": round(compute_s, 3)}


# ------------------------------------------------------------------- the runs

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--conf", default="petridish_digits", help="config file or name")
    p.add_argument("--seeds", default="0,1,2,3,4", help="run seeds, comma-separated")
    p.add_argument("--children", type=int, default=8, help="grown children per run")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[],
                   metavar="KEY=VALUE", help="overrides for the runs and the arms")
    p.add_argument("--replay-set", dest="replay", nargs="+", action="extend", default=[],
                   metavar="KEY=VALUE", help="overrides for the arms only")
    p.add_argument("--out", default="runs/inheritance")
    p.add_argument("--runs", help="where the searches are (default: --out)")
    p.add_argument("--against", action="append", default=[], metavar="DIR",
                   help="another benchmark's --out, of the same runs: arm against arm")
    p.add_argument("--jobs", type=int, default=2, help="arms trained at once (CPUs)")
    return p.parse_args(argv)


def search_overrides(args: argparse.Namespace, seed: int) -> list[str]:
    """The run's overrides: enough trials for every seed shape and `--children` more,
    and no compute budget (the trial count is what bounds it)."""
    from petrinas.config import seed_macros
    from petrinas.config_loader import load_config

    config = load_config(args.conf, args.overrides)
    trials = len(seed_macros(config)) + args.children
    return [*args.overrides, f"seed={seed}", f"search.max_trials={trials}",
            "search.max_compute_hours=0", "search.strategy=petridish"]


def run_searches(args: argparse.Namespace, seeds: list[int]) -> dict[int, Path]:
    runs = {}
    for seed in seeds:
        out = Path(args.runs or args.out) / f"seed{seed}"
        start = time.perf_counter()
        done = subprocess.run([sys.executable, str(REPO / "scripts" / "search.py"), "--conf",
                               args.conf, "--out", str(out), "--quiet", "--set",
                               *search_overrides(args, seed)], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{out}: search exited {done.returncode}\n{done.stderr}")
        print(f"  search seed {seed}: {time.perf_counter() - start:6.1f} s  ({out})",
              flush=True)
        runs[seed] = out
    return runs


def children_of(run: Path, limit: int) -> list[dict]:
    from petrinas.search.kinds import SEARCH

    grown = [r for r in read_rows(run / "pool.tsv")
             if r["stage"] == SEARCH and r["status"] == "ok"]
    return sorted(grown, key=lambda r: r["trial_id"])[:limit]


def lineage(rows: Sequence[dict], trial_id: str) -> tuple[int, float]:
    """(epochs, compute_s) of `trial_id` and all its ancestors, from a run's pool rows:
    what its whole lineage trained, back to the seed."""
    by_id = {r["trial_id"]: r for r in rows}
    epochs, compute = 0, 0.0
    while trial_id:
        row = by_id[trial_id]
        epochs += int(row["epochs"])
        compute += float(row["compute_s"])
        trial_id = row["parent_id"]
    return epochs, compute


def recorded_pairs(run: Path, trial_id: str) -> dict[str, list]:
    """The pairs a run's child was finalized with, as its metrics.json notes say."""
    notes = json.loads((run / "trials" / trial_id / "metrics.json").read_text())["notes"]
    return notes["chosen"]


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def replay(todo: list, path: Path, rows: list[dict]) -> None:
    """Each child's arms (replay_child) as Ray jobs of one CPU; each child's rows appended
    to children.tsv (and to `rows`) the moment its job ends."""
    import ray

    from petrinas.engine.runner import trial_seed
    from petrinas.engine.store import read_trial_desc

    remote = ray.remote(num_cpus=1, max_retries=0)(replay_child)
    pending = {}
    for seed, config, child, run in todo:
        pool = read_rows(run / "pool.tsv")
        epochs, _ = lineage(pool, child["trial_id"])
        _, ancestors_s = lineage(pool, child["parent_id"])
        ref = remote.remote(config, read_trial_desc(run, child["parent_id"]),
                            (run / "trials" / child["parent_id"] / "weights.pt")
                            .read_bytes(), trial_seed(config.seed, child["trial_id"]),
                            recorded_pairs(run, child["trial_id"]), epochs)
        pending[ref] = (seed, {**child, "lineage_compute_s": round(ancestors_s, 3)})
    new_file = not path.is_file()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, delimiter="\t")
        if new_file:
            writer.writeheader()
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            seed, child = pending.pop(ref)
            for arm, scores in ray.get(ref).items():
                row = {"seed": seed, "trial_id": child["trial_id"],
                       "parent_id": child["parent_id"], "arm": arm, **scores,
                       "lineage_compute_s": child["lineage_compute_s"]}
                writer.writerow(row)
                rows.append({k: str(v) for k, v in row.items()})
            f.flush()
            print(f"  seed {seed} {child['trial_id']}: done ({len(pending)} left)",
                  flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    from petrinas.config_loader import load_config
    from petrinas.engine.jobs import jobs_ray

    seeds = [int(s) for s in args.seeds.split(",") if s]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    print(f"{len(seeds)} runs of {args.conf}, {args.children} children each, into {out}")
    runs = run_searches(args, seeds)
    path = out / "children.tsv"
    rows = read_rows(path)
    if rows and list(rows[0]) != COLUMNS:
        raise SystemExit(f"{path}: written by an older version of this benchmark (columns "
                         f"{list(rows[0])}); give another --out")
    done = {(int(r["seed"]), r["trial_id"]) for r in rows}
    todo = []
    for seed, run in runs.items():
        config = load_config(str(run / "config.yaml"), args.replay)
        for child in children_of(run, args.children):
            if (seed, child["trial_id"]) not in done:
                todo.append((seed, config, child, run))
    if todo:
        with jobs_ray(args.jobs):
            replay(todo, path, rows)
    text = (f"{args.conf}, run seeds {args.seeds}, {args.children} children per run"
            + (f", --set {' '.join(args.overrides)}" if args.overrides else "")
            + (f", arms with --replay-set {' '.join(args.replay)}" if args.replay else "")
            + "\n\n" + table(rows) + "\n\n" + arm_means(rows) + "\n"
            + "".join(f"\n{against(rows, read_rows(Path(d) / 'children.tsv'), Path(d).name)}\n"
                      for d in args.against))
    (out / "inheritance.md").write_text(text)
    print(f"\nwall time {(time.perf_counter() - started) / 60:.1f} min\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
