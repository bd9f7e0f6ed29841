"""The benchmarks stay runnable: gpu_throughput's reduced (CPU) mode end to end (one
row, through Ray with a declared GPU), its row arithmetic and table on recorded numbers,
and its projection of the paper search's GPU-hours."""

import json
import os
import subprocess
import sys

import pytest
import torch

from petrinas.config_loader import load_config
from support import REPO, load_script


def _benchmark(name: str):
    return load_script(REPO / "benchmarks" / f"{name}.py")


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


def _recorded_jobs():
    """Two jobs' reports as run_job returns them: 100 images (4 steps) per epoch."""
    common = {"device": "cuda", "precision": "bfloat16", "train_images": 100,
              "batch_size": 25, "together": True}
    return [{**common, "epoch_spans": [[-2.0, 10.0], [10.0, 20.0], [20.0, 30.0]],
             "epoch_s": [12.0, 10.0, 10.0], "train_s": [11.0, 8.0, 8.5],
             "memory_mb": 700.0, "training_step": {"mode": "cuda_graph", "replayed": 40}},
            {**common, "epoch_spans": [[0.0, 12.0], [12.0, 22.0], [22.0, 32.0]],
             "epoch_s": [12.0, 10.0, 10.0], "train_s": [11.5, 9.0, 9.0],
             "memory_mb": 750.0, "training_step": {"mode": "cuda_graph", "replayed": 0,
                                                   "failed": "capture"}}]


def test_a_row_is_arithmetic_on_its_jobs_reports():
    """Fails if the steady window, the rates, ms/step, the first epoch's extra seconds,
    the memory, the utilization's window, the graph count or the table line is
    computed otherwise."""
    bench = _benchmark("gpu_throughput")
    samples = [(11.0, 50.0), (12.0, 60.0), (20.0, 80.0), (30.0, 100.0), (31.0, 0.0)]
    row = bench.summarize("search", "graphed", _recorded_jobs(), samples, "nvml")
    # Window [12, 30]: job 1's epochs 2 and 3 count 0.8 and 1 of 100 images, job 2's
    # 1 and 0.8: 360 images in 18 s. Steady steps: 8.25 s and 9 s over 4 steps.
    assert row["window"] == (12.0, 30.0)
    assert (row["images_per_s_gpu"], row["images_per_s_job"]) == (20.0, 10.0)
    assert row["ms_per_step"] == (2062.5 + 2250.0) / 2
    assert (row["first_epoch_extra_s"], row["memory_mb_job"]) == (2.0, 750.0)
    assert row["sm_util_pct"] == 80.0                       # the samples at 12, 20, 30
    assert (row["graphed_jobs"], row["together"], row["steps_per_epoch"]) == (1, 2, 4)
    base = {**row, "jobs": 1, "images_per_s_gpu": 8.0}
    assert bench.format_row(row, base) == (
        "search   graphed    2         20         10    2.50   2156.2          2.0"
        "      750        80    1/2      2/2")


def test_what_was_not_measured_says_n_a():
    """Jobs that never ran side by side have no rate, and a machine without NVML or
    nvidia-smi has no utilization: the table says n/a. Fails if either is shown as a
    number (or the row cannot be written at all)."""
    bench = _benchmark("gpu_throughput")
    row = bench.summarize("post", "eager", _recorded_jobs(), [], None)   # no sampler
    assert row["window"] == (12.0, 30.0) and row["sm_util_pct"] is None
    assert bench.format_row(row, row).split()[9:11] == ["n/a", "-"]   # eager: no graphs
    jobs = _recorded_jobs()
    jobs[1]["epoch_spans"] = [[40.0, 50.0], [50.0, 60.0], [60.0, 70.0]]  # after job 1
    row = bench.summarize("post", "eager", jobs, [(45.0, 90.0)], "nvml")
    assert row["window"] is None and row["images_per_s_gpu"] is None
    assert row["sm_util_pct"] is None and row["graphed_jobs"] == 1
    line = bench.format_row(row, None)
    assert line.split()[3:6] == ["n/a", "n/a", "n/a"] and line.split()[9] == "n/a"


def test_each_record_is_printed_and_appended_as_it_comes(tmp_path, capsys):
    """Fails if records are held back until the run ends (a run stopped half-way, as one
    on an H200 was, would then keep none)."""
    bench = _benchmark("gpu_throughput")
    path = tmp_path / "out" / "rows.jsonl"
    writer = bench.RowWriter(path)
    writer.write({"record": "setup", "gpu": "x"}, "setup line")
    assert [json.loads(line) for line in path.read_text().splitlines()] == [
        {"record": "setup", "gpu": "x"}]
    row = bench.summarize("post", "eager", _recorded_jobs()[:1], [], None)
    writer.write(row)
    assert capsys.readouterr().out.splitlines() == ["setup line",
                                                    bench.format_row(row, row)]
    assert len(path.read_text().splitlines()) == 2 and writer.rows == [row]


def test_a_spent_budget_starts_no_row_and_records_them_as_skipped(tmp_path):
    """Fails if a row starts past --budget-s, or if the rows left out are not recorded
    (then the projection has no rows and says so)."""
    bench = _benchmark("gpu_throughput")
    out = tmp_path / "rows.jsonl"
    results = bench.main(["--reduced", "--jobs", "1,2", "--kinds", "post",
                          "--budget-s", "0", "--out", str(out)])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["record"] for r in records] == ["setup", "skipped", "projection"]
    assert records[1]["rows"] == [[1, "post", "eager"], [2, "post", "eager"]]
    assert results["rows"] == [] and records[2]["gpu_hours"] is None


def test_gpu_throughput_reduced_mode_runs(tmp_path):
    """One row of the real benchmark on CPU: two search jobs packed on the one declared
    GPU through Ray. Fails if the jobs did not run at once (each waits at the barrier
    for the other to have started: `together` counts the jobs that saw both arrive), if
    the row's numbers are not those of its recorded reports, or if the table line, the
    file and the projection disagree."""
    out = tmp_path / "rows.jsonl"
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_throughput.py"),
                           "--reduced", "--jobs", "2", "--kinds", "search",
                           "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    bench = _benchmark("gpu_throughput")
    setup, row, projection = [json.loads(line) for line in out.read_text().splitlines()]
    assert setup["record"] == "setup" and setup["reduced"] is True
    assert (row["kind"], row["step"], row["jobs"], row["device"], row["precision"]) == (
        "search", "eager", 2, "cpu", "float32")
    assert row["together"] == 2, "the two jobs did not wait for each other"
    again = bench.summarize("search", "eager", row["jobs_raw"], row["util_samples"],
                            row["util_source"])
    assert json.loads(json.dumps(again)) == {k: v for k, v in row.items() if k != "wall_s"}
    assert projection == json.loads(json.dumps(bench.projection([row], True)[0]))
    lines = done.stdout.splitlines()
    assert bench.HEAD in lines and bench.format_row(row, None) in lines
    assert lines[-1] == bench.projection([row], True)[1]


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


@pytest.mark.usefixtures("shared_ray")
def test_inheritance_benchmark_replays_the_search_child_exactly(tmp_path):
    """The reduced benchmark (one run, one child), by the script's main in this process:
    its search is search.py's (a process of its own, as always), its replay a job on the
    suite's Ray instance. The child arm retrains the run's own child bit for bit (same
    seed, one thread), and every arm trains the same epochs."""
    from support import TINY, read_tsv

    out = tmp_path / "inh"
    assert _benchmark("inheritance").main(["--seeds", "0", "--children", "1", "--jobs", "1",
                                           "--out", str(out), "--set", *TINY]) == 0
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
