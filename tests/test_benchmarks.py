"""The benchmarks stay runnable: gpu_throughput's reduced (CPU) mode end to end, through
Ray with a declared GPU, and its projection of the paper search's GPU-hours."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from petrinas.config_loader import load_config
from support import REPO


def _benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_projection_of_the_paper_search():
    bench = _benchmark("gpu_throughput")
    paper = load_config("petridish")
    assert bench.cifar10_train_images(paper) == 45_000
    search = {"images_per_s_gpu": 1000.0, "first_epoch_extra_s": 72.0, "jobs": 2}
    post = {"images_per_s_gpu": 2000.0, "first_epoch_extra_s": 18.0, "jobs": 1}
    # A post-train (or seed) phase: 80 epochs x 45,000 images at 2,000/s + 18 s = 1818 s;
    # a search phase: 80 x 45,000 at 1,000/s + 72 s shared by 2 jobs = 3636 s.
    assert bench.phase_gpu_seconds(post, 80, 45_000) == 1818.0
    assert bench.phase_gpu_seconds(search, 80, 45_000) == 3636.0
    # 30 seeds x 1818 s + 370 children x (3636 + 1818) s = 2,072,520 s.
    assert bench.project_gpu_hours(paper, search, post, 45_000) == {
        "seeds": 30, "children": 370, "train_images": 45_000, "gpu_hours": 575.7}


def test_window_rate_counts_only_the_side_by_side_steady_part():
    bench = _benchmark("gpu_throughput")
    a = [(0.0, 10.0), (10.0, 20.0), (20.0, 30.0)]
    b = [(2.0, 12.0), (12.0, 22.0), (22.0, 32.0)]
    # Window [12, 30]: a's epochs 2 and 3 count 0.8 and 1, b's 1 and 0.8 of 100 images.
    assert bench.window_rate([a, b], 100) == 20.0
    assert bench.window_rate([a], 100) == 10.0
    with pytest.raises(ValueError, match="more epochs"):
        bench.window_rate([a, [(25.0, 31.0), (31.0, 35.0)]], 100)


def test_gpu_throughput_reduced_mode_runs(tmp_path):
    """Two jobs on the one declared GPU (the whole grid takes longer: each further job
    at once is another Ray worker process to start)."""
    out = tmp_path / "results.json"
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_throughput.py"),
                           "--reduced", "--epochs", "5", "--packings", "0.5",
                           "--compile", "off",
                           "--json", str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    bench = _benchmark("gpu_throughput")
    assert results["reduced"] is True
    rows = results["rows"]
    assert [(r["kind"], r["jobs"]) for r in rows] == [("search", 2), ("post", 2)]
    for row in rows:
        (start_a, end_a), (start_b, end_b) = row["spans"]
        assert max(start_a, start_b) < min(end_a, end_b), "Ray ran the two jobs at once"
        assert row["images_per_s_job"] > 0 and row["memory_mb_job"] > 0
        # Per GPU: the jobs on it together, over the window where they ran side by side.
        # Checked against what each job's own steady epoch took (not the window): the
        # two agree when the window is each job's second epoch, as here, up to how much
        # of it the window holds.
        own = sum(row["train_images"] / bench.steady(epochs)[0] for epochs in row["epoch_s"])
        assert row["images_per_s_gpu"] == pytest.approx(own, rel=0.25)
        assert row["compile"] is False and row["precision"] == "float32"
    assert results["projection"]["gpu_hours"] > 0
    assert "GPU-hours" in done.stdout and "img/s/GPU" in done.stdout


# ----------------------------------------------------------------- inheritance.py

def test_clustered_bootstrap_resamples_runs_not_children():
    """Two runs, of nine children at +1 and one child at +3: the mean is over the ten
    children (12/10). Resampling the two runs gives 1 (run 0 twice, a quarter of the
    draws), 12/10 (half) or 3 (run 1 twice, a quarter), so the 95 % interval is [1, 3].
    Resampling the ten children gives 1 + 0.2 K, K ~ Binomial(10, 0.1) the draws of the
    +3 child: P(K = 0) = 0.35, P(K >= 3) = 0.070, P(K >= 4) = 0.013, so [1, 1.6], which is
    what one run (its children the only units) must get.

    Fails if the interval resamples children (or anything but whole runs) when there
    are several runs."""
    bench = _benchmark("inheritance")
    assert bench.clustered_bootstrap([[1.0] * 9, [3.0]]) == (1.2, 1.0, 3.0)
    assert bench.clustered_bootstrap([[1.0] * 9 + [3.0]]) == (1.2, 1.0, 1.6)


def test_paired_differences_are_per_child_and_per_run():
    bench = _benchmark("inheritance")
    rows = [{"seed": "0", "trial_id": "t0004", "arm": "child", "val_top1": "0.9"},
            {"seed": "0", "trial_id": "t0004", "arm": "scratch", "val_top1": "0.7"},
            {"seed": "1", "trial_id": "t0004", "arm": "child", "val_top1": "0.5"},
            {"seed": "1", "trial_id": "t0004", "arm": "scratch", "val_top1": "0.75"},
            {"seed": "1", "trial_id": "t0005", "arm": "child", "val_top1": "0.5"}]
    diffs = bench.paired(rows, "child", "scratch", "val_top1")
    assert sorted(diffs) == [0, 1]  # t0005 has no scratch arm: no pair
    assert diffs[0] == pytest.approx([0.2]) and diffs[1] == pytest.approx([-0.25])


def test_against_pairs_each_arm_with_the_same_arm_of_another_benchmark():
    bench = _benchmark("inheritance")
    here = [{"seed": "0", "trial_id": "t0004", "arm": "child", "val_top1": "0.9",
             "test_top1": "0.8"}]
    there = [{"seed": "0", "trial_id": "t0004", "arm": "child", "val_top1": "0.7",
              "test_top1": "0.85"}]
    lines = bench.against(here, there, "before").splitlines()
    assert lines[0].startswith("| arm: here − before |")
    assert lines[2:] == ["| child | 1 (1) | +0.2000 [+0.2000, +0.2000] | 1/1 | "
                         "-0.0500 [-0.0500, -0.0500] |"]  # arms without a pair: no row


def test_inheritance_benchmark_replays_the_search_child_exactly(tmp_path):
    """The reduced benchmark (one run, one child): the child arm retrains the run's own
    child bit for bit (same seed, one thread), and every arm trains the same epochs."""
    from support import TINY, read_tsv

    out = tmp_path / "inh"
    code = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "inheritance.py"), "--seeds", "0",
         "--children", "1", "--jobs", "1", "--out", str(out), "--set", *TINY],
        capture_output=True, text=True, timeout=300)
    assert code.returncode == 0, code.stderr
    arms = {r["arm"]: r for r in read_tsv(out / "children.tsv")}
    assert sorted(arms) == ["child", "parent", "random", "scratch", "scratch_total"]
    child = arms["child"]
    recorded = {r["trial_id"]: r for r in read_tsv(out / "seed0" / "pool.tsv")}[
        child["trial_id"]]
    assert recorded["stage"] == "search" and recorded["parent_id"] == child["parent_id"]
    assert float(child["val_top1"]) == pytest.approx(float(recorded["val_top1"]), abs=1e-6)
    assert float(child["test_top1"]) == pytest.approx(float(recorded["test_top1"]), abs=1e-6)
    notes = json.loads((out / "seed0" / "trials" / child["trial_id"] / "metrics.json")
                       .read_text())["notes"]
    assert json.loads(child["pairs"]) == notes["chosen"]
    # TINY: 1 search + 1 post epoch per arm; the lineage's: the seed's 2 and the child's 2.
    assert {a: r["epochs"] for a, r in arms.items()} == {
        "child": "2", "random": "2", "scratch": "2", "parent": "2", "scratch_total": "4"}
    parent = {r["trial_id"]: r for r in read_tsv(out / "seed0" / "pool.tsv")}[
        child["parent_id"]]
    assert float(child["lineage_compute_s"]) == float(parent["compute_s"])  # a seed parent
    assert {r["search_val_top1"] for r in arms.values()} == {child["search_val_top1"]}
    assert "| inheritance (child − scratch) | 1 (1) |" in (out / "inheritance.md").read_text()


def test_the_child_arm_replays_the_pairs_the_child_recorded(one_thread):
    """Fails if replay_child finalizes the top-k |alpha| pairs instead of the pairs it is
    given (a child grown with search.duplicate_retries is not the top-k): here the
    lowest-ranked pair of the phase is asked for, and only it is replayed."""
    from support import TINY

    from petrinas.config_loader import load_config
    from petrinas.data import load_splits
    from petrinas.model_desc.desc import ModelDesc
    from petrinas.model_desc.grow import ranked_pairs
    from petrinas.train.pipeline import JobContext, run_seed, search_phase

    bench = _benchmark("inheritance")
    config = load_config("petridish_digits", [*TINY, "model.top_k=1"])
    parent = run_seed(config, (1, 0, 1), JobContext(seed=0, cpu_threads=1))
    torch.manual_seed(7)
    searched = search_phase(config, ModelDesc.from_dict(parent.desc), parent.weights,
                            load_splits(config.dataset, config.seed, keep_uint8=True),
                            JobContext(seed=7, cpu_threads=1))
    last = ranked_pairs(searched.desc, searched.state)["normal"][-1]
    worst = {"normal": [list(searched.desc.normal.candidate.pairs[last])]}
    arms = bench.replay_child(config, parent.desc, parent.weights, 7, worst, 5)
    assert json.loads(arms["child"]["pairs"]) == worst
    assert arms["scratch_total"]["epochs"] == 5 and arms["scratch"]["epochs"] == 2


def test_scratch_and_parent_arms_train_the_childs_two_phases(one_thread):
    """replay_child in this process (one thread, as its Ray task), from an untrained seed:
    the search phase has 1 epoch, post-training 2 and the seed phase 4, so only
    search_train then post_train gives an arm 3 epochs (post twice 4, search twice 2,
    seed and post 6); scratch_total trains the lineage's 7 epochs.

    Fails if the scratch or parent arm trains with another phase's configuration."""
    import torch

    from petrinas.model_desc.builder import build_seed
    from petrinas.model_desc.model import build_model, weights_to_bytes
    from support import TINY

    bench = _benchmark("inheritance")
    config = load_config("petridish_digits", [
        *TINY, "search.seed_train.epochs=4", "search.search_train.epochs=1",
        "search.post_train.epochs=2", "dataset.max_train=64"])
    parent = build_seed(config, cells=1, reductions=0, nodes=1)
    torch.manual_seed(0)
    weights = weights_to_bytes(build_model(parent).state_dict())
    arms = bench.replay_child(config, parent.to_dict(), weights, child_seed=3,
                              chosen={"normal": [[1, "sep_conv_3x3"]]}, lineage_epochs=7)
    assert {arm: scores["epochs"] for arm, scores in arms.items()} == {
        "child": 3, "random": 3, "scratch": 3, "parent": 3, "scratch_total": 7}
