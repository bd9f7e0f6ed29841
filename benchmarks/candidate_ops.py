"""What grouping the candidate's ops saves: the search-phase model with its candidate in
the per-pair form (one module per (state, op), pairwise.py) and grouped (one module per
op and stride group, candidate.py), and the post-train model it becomes, for reference.

Models, on CPU:
  * paper: confs/petridish.yaml's mid-size search-phase model (5 cells, 2 reductions,
    2 nodes, 16 channels, 11 candidate ops) on synthetic CIFAR-shaped input (3x32x32);
  * digits: confs/petridish_digits.yaml's mid-size one (3 cells, 1 reduction, 2 nodes,
    6 candidate ops) on 1x8x8 input, at its batch size (32).
Per model: aten ops of one forward + backward (torch.profiler, every aten event; what
the GPU measurements in docs/gpus.md counted), parameter tensors (each is a
few more ops in the clip and optimizer step), and the CPU time of one training step as
the trainer takes it (zero_grad, forward, loss + L1 on the alphas, backward, clip, SGD
step): the median over `--repeats` rounds in which the three models alternate.

The paper model runs at batch 16: below that, on one thread, CPU convolution skips
oneDNN for unstrided 1x1 convs and loops over the groups of a grouped one in Python-level
aten ops, which the CUDA kernels (one launch per grouped conv) do not.

With `--search-jobs N`, it also runs N real search jobs (`run_search`) of the digits
default per form, alternating, from an untrained parent of the digits shape above: the
search phase's seconds, the whole job's, and the accuracy reached (same seed: the same
computation up to float rounding).

    python benchmarks/candidate_ops.py [--repeats 7] [--search-jobs 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

from petrinas.config_loader import load_config
from petrinas.model_desc import build_model, build_seed
from petrinas.model_desc.grow import alphas, finalize, grow_model, l1_penalty
from petrinas.model_desc.pairwise import grouped_state, to_pairwise

SETTINGS = {
    "paper": ("petridish", ["dataset.name=synthetic", "dataset.synthetic_shape=[3, 32, 32]",
                            "dataset.synthetic_size=1200", "dataset.root="],
              {"cells": 5, "reductions": 2, "nodes": 2}, 16),
    "digits": ("petridish_digits", [], {"cells": 3, "reductions": 1, "nodes": 2}, 32),
}
FORMS = ("per-pair", "grouped", "post-train")


def models(setting: str) -> tuple[dict[str, nn.Module], torch.Tensor, torch.Tensor, float]:
    conf, overrides, macro, batch = SETTINGS[setting]
    config = load_config(conf, overrides)
    desc = build_seed(config, **macro)
    torch.manual_seed(0)
    grown = grow_model(desc, build_model(desc).state_dict(), config.model.candidate_ops)
    child_desc, child_state = finalize(grown.desc, grown.state_dict(), config.model.top_k)
    child = build_model(child_desc)
    child.load_state_dict(child_state)
    out = {"per-pair": to_pairwise(grown), "grouped": grown, "post-train": child}
    x = torch.randn(batch, *desc.input_shape, generator=torch.Generator().manual_seed(0))
    y = torch.arange(batch) % desc.num_classes
    return out, x, y, config.search.l1


class Step:
    """One training step as the trainer takes it (without its data pipeline)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, l1: float):
        self.model, self.x, self.y, self.l1 = model.train(), x, y, l1
        self.alphas = alphas(model)
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9,
                                         weight_decay=3e-4)

    def forward_backward(self) -> None:
        self.model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.model(self.x), self.y)
        if self.alphas:
            loss = loss + self.l1 * l1_penalty(self.model)
        loss.backward()

    def __call__(self) -> None:
        self.forward_backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.optimizer.step()


def aten_ops(fn) -> int:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for event in prof.events() if event.name.startswith("aten::"))


def measure(setting: str, repeats: int) -> dict[str, dict]:
    built, x, y, l1 = models(setting)
    steps = {form: Step(built[form], x, y, l1) for form in FORMS}
    rows = {}
    for form, step in steps.items():
        step()  # warm-up: lazy initialization, allocator growth
        rows[form] = {"aten_ops": aten_ops(step.forward_backward),
                      "param_tensors": len(list(step.model.parameters())), "ms": []}
    for _ in range(repeats):
        for form, step in steps.items():  # alternating: a busy machine slows all alike
            started = time.perf_counter()
            step()
            rows[form]["ms"].append((time.perf_counter() - started) * 1000)
    for row in rows.values():
        row["ms"] = statistics.median(row["ms"])
    return rows


def print_table(setting: str, rows: dict[str, dict]) -> None:
    post = rows["post-train"]
    print(f"| {setting} model | aten ops fwd+bwd | / post-train | parameter tensors | "
          f"CPU ms/step | / grouped |")
    print("|---|---:|---:|---:|---:|---:|")
    for form, row in rows.items():
        print(f"| {form} | {row['aten_ops']:,} | {row['aten_ops'] / post['aten_ops']:.2f}x "
              f"| {row['param_tensors']:,} | {row['ms']:.1f} | "
              f"{row['ms'] / rows['grouped']['ms']:.2f}x |")
    sys.stdout.flush()


# ------------------------------------------------------------------- search jobs

@contextmanager
def per_pair_search():
    """run_search with the per-pair candidate: the grown model is converted after it is
    built, and its weights back to the grouped layout before finalize."""
    from petrinas.train import pipeline

    grow, final = pipeline.grow_model, pipeline.finalize

    def grow_pairwise(*args, **kwargs):
        return to_pairwise(grow(*args, **kwargs))

    def finalize_pairwise(desc, state, k, **kwargs):
        state = dict(state)
        for i in range(desc.cells):
            prefix = f"cells.{i}.candidate."
            own = {key[len(prefix):]: state.pop(key) for key in list(state)
                   if key.startswith(prefix)}
            converted = grouped_state(own, desc.cell_desc(i).candidate,
                                      i in desc.reduction_indices)
            state.update({prefix + key: value for key, value in converted.items()})
        return final(desc, state, k, **kwargs)

    pipeline.grow_model, pipeline.finalize = grow_pairwise, finalize_pairwise
    try:
        yield
    finally:
        pipeline.grow_model, pipeline.finalize = grow, final


def search_jobs(jobs: int, threads: int) -> None:
    from contextlib import nullcontext

    from petrinas.model_desc.model import weights_to_bytes
    from petrinas.train.pipeline import JobContext, run_search

    config = load_config("petridish_digits")
    desc = build_seed(config, **SETTINGS["digits"][2])
    torch.manual_seed(0)
    parent = weights_to_bytes(build_model(desc).state_dict())
    results: dict[str, list[dict]] = {"per-pair": [], "grouped": []}
    for _ in range(jobs):
        for form in results:
            with per_pair_search() if form == "per-pair" else nullcontext():
                out = run_search(config, desc.to_dict(), parent,
                                 JobContext(seed=0, cpu_threads=threads))
            results[form].append({
                "search_s": out.history["search_train"]["final"]["wall_s"],
                "job_s": out.row["compute_s"], "val_top1": out.row["val_top1"],
                "chosen": out.notes["chosen"]})
    print(f"\nsearch jobs of the digits default ({config.search.search_train.epochs} "
          f"search + {config.search.post_train.epochs} post-train epochs, parent "
          f"{SETTINGS['digits'][2]}), median of {jobs}:")
    print("| candidate | search phase s | whole job s | val top-1 | same choice |")
    print("|---|---:|---:|---:|---|")
    for form, runs in results.items():
        same = all(r["chosen"] == results["grouped"][0]["chosen"] for r in runs)
        print(f"| {form} | {statistics.median(r['search_s'] for r in runs):.1f} | "
              f"{statistics.median(r['job_s'] for r in runs):.1f} | "
              f"{statistics.median(r['val_top1'] for r in runs):.3f} | {same} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--search-jobs", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), step times: median of "
          f"{args.repeats} alternating rounds")
    for setting in SETTINGS:
        print()
        print_table(setting, measure(setting, args.repeats))
    if args.search_jobs:
        search_jobs(args.search_jobs, args.threads)


if __name__ == "__main__":
    main()
