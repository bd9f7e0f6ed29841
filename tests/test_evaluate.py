"""The eval stage on a real (tiny) digits search: pipeline, outputs, kill and resume."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from petrinas import load_model
from petrinas.cli import eval_main, search_main
from petrinas.data import load_dataset
from petrinas.config_loader import load_config
from petrinas.engine.store import history

from support import REPO, TINY, read_tsv, wait_for

pytestmark = pytest.mark.usefixtures("shared_ray")

EVAL_TINY = ["eval.train.epochs=2", "eval.init_channels=6", "eval.max_cells=3",
             "eval.cell_count_scale=1.5", "eval.max_models=2"]


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    """A search with eval.enabled: the eval stage runs in the same command."""
    out = tmp_path_factory.mktemp("pipeline") / "run"
    code = search_main(["--out", str(out), "--quiet", "--set", "search.max_trials=4",
                        "eval.enabled=true", *TINY, *EVAL_TINY])
    assert code == 0
    return out


def test_pipeline_writes_the_eval_outputs(pipeline_run):
    eval_dir = pipeline_run / "eval"
    for name in ["pool.tsv", "frontier.tsv", "frontier.png", "frontier.pdf", "frontier.md",
                 "frontier.tex", "config.yaml"]:
        assert (eval_dir / name).is_file(), name
    rows = read_tsv(eval_dir / "pool.tsv")
    assert len(rows) == 2 and all(r["stage"] == "eval" and r["status"] == "ok" for r in rows)
    gallery = {p.name for p in (pipeline_run / "gallery").iterdir()}
    assert {r["parent_id"] for r in rows} <= gallery
    table = (eval_dir / "frontier.md").read_text().splitlines()
    assert table[0].startswith("| model | trial |")
    # The frontier (selected on validation error) in every file, under the same ids.
    frontier = read_tsv(eval_dir / "frontier.tsv")
    assert [line.split(" | ")[1] for line in table[2:]] == [r["trial_id"] for r in frontier]
    assert "\\toprule" in (eval_dir / "frontier.tex").read_text()


def test_eval_models_are_rebuilt_bigger_and_load(pipeline_run):
    config = load_config(pipeline_run / "config.yaml")
    test = load_dataset(config, split="test")
    for row in read_tsv(pipeline_run / "eval" / "pool.tsv"):
        folder = pipeline_run / "eval" / "trials" / row["trial_id"]
        metrics = json.loads((folder / "metrics.json").read_text())
        assert len(metrics["history"]["eval_train"]["history"]) == 2  # per-epoch curves
        model = load_model(folder)
        searched = load_model(pipeline_run / "trials" / row["parent_id"]).desc
        # Wider (6 channels, not 4) and 1.5x the cells, capped at 3 (TINY seeds have 1-2).
        assert (searched.init_channels, model.desc.init_channels) == (4, 6)
        assert model.desc.cells == min(round(searched.cells * 1.5), 3) > searched.cells
        assert (model.desc.normal, model.desc.reduce) == (searched.normal, searched.reduce)
        accuracy = (model(test.x).argmax(1) == test.y).float().mean().item()
        assert accuracy == pytest.approx(float(row["test_top1"]), abs=1e-5)


@pytest.mark.parametrize("form", [["--run", "RUN"], ["RUN"], ["RUN", "--run", "RUN"]],
                         ids=["--run DIR", "DIR", "both"])
def test_eval_again_retrains_nothing(pipeline_run, form):
    """`eval DIR` as export DIR and draw DIR take theirs, and `eval --run DIR` as before.
    Fails if either form is refused."""
    before = history(pipeline_run / "eval")
    run = [str(pipeline_run) if arg == "RUN" else arg for arg in form]
    assert eval_main([*run, "--quiet"]) == 0
    assert history(pipeline_run / "eval") == before


def test_export_of_the_eval_folder_exports_the_best_eval_model(pipeline_run, tmp_path):
    """`export RUN/eval`, as `export --help` says. Fails if it exports a search model (a
    gallery folder) instead of the eval stage's best, the fully trained one."""
    from petrinas.cli import export_main
    from petrinas.evaluate import best_eval_row

    assert export_main([str(pipeline_run / "eval"), "--out", str(tmp_path / "x")]) == 0
    rows = read_tsv(pipeline_run / "eval" / "pool.tsv")
    best = best_eval_row(rows, load_config(pipeline_run / "config.yaml").search
                         .convex_hull_eps, "macs")
    exported = (tmp_path / "x" / "desc.yaml").read_text()
    assert exported == (pipeline_run / "eval" / "trials" / best["trial_id"] /
                        "desc.yaml").read_text()


def test_eval_names_a_run_directory_taken_by_set(pipeline_run, capsys, monkeypatch):
    """Fails if `eval --set k=v DIR` says only that DIR is no KEY=VALUE."""
    monkeypatch.setattr(sys, "argv", ["eval.py"])   # as scripts/eval.py runs
    assert eval_main(["--set", "eval.train.epochs=3", str(pipeline_run)]) == 2
    assert capsys.readouterr().err == (
        f"error: eval.py: --set takes KEY=VALUE, not {str(pipeline_run)!r}: put the run "
        "directory first (eval DIR --set ...) or give it as --run DIR\n")


def test_a_failed_eval_model_is_tried_again_by_the_next_run(pipeline_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(pipeline_run, run, ignore=shutil.ignore_patterns("eval"))
    # 64 MB is far below a job's needs: every model fails ("out of memory").
    assert eval_main(["--run", str(run), "--quiet", "--set",
                      "resources.memory_per_job_mb=64"]) == 0
    first = read_tsv(run / "eval" / "pool.tsv")
    assert [r["status"] for r in first] == ["failed", "failed"]
    assert all("out of memory" in r["error"] for r in first)
    assert eval_main(["--run", str(run), "--quiet"]) == 0
    rows = read_tsv(run / "eval" / "pool.tsv")
    assert [(r["trial_id"], r["status"]) for r in rows] == [
        ("e0000", "failed"), ("e0001", "failed"), ("e0002", "ok"), ("e0003", "ok")]
    models = sorted(r["parent_id"] for r in first)
    assert sorted(r["parent_id"] for r in rows[2:]) == models
    assert all((run / "eval" / "trials" / r["trial_id"] / "weights.pt").is_file()
               for r in rows[2:])


def test_eval_of_a_missing_run_exits_2(tmp_path, capsys):
    assert eval_main(["--run", str(tmp_path / "nothing")]) == 2
    assert "no search run there" in capsys.readouterr().err


def test_eval_with_an_address_with_nothing_listening_exits_2_and_writes_no_eval_folder(
        pipeline_run, tmp_path):
    """Fails if eval writes into DIR/eval/ before it has tried the address (an eval/
    that exists already is not removed on a refusal: here an empty one), or waits on
    ray.init's endless retries (the timeout only guards the suite against that hang)."""
    import socket
    run = tmp_path / "run"
    shutil.copytree(pipeline_run, run, ignore=shutil.ignore_patterns("eval"))
    (run / "eval").mkdir()
    with socket.socket() as s:            # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "eval.py"), "--run",
                             str(run), "--quiet", "--address", address],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith(f"error: --address {address}: cannot reach the Ray "
                                    "cluster (connection refused); check that")
    assert result.stderr.count("\n") == 1
    assert list((run / "eval").iterdir()) == []


def test_sigkill_mid_eval_then_resume_retrains_nothing_finished(pipeline_run, tmp_path,
                                                               capsys):
    """Fails if a model whose result was written before the kill is trained again, or
    its row changes, or the resumed eval does not finish the rest."""
    run = tmp_path / "run"
    shutil.copytree(pipeline_run, run, ignore=shutil.ignore_patterns("eval"))
    cmd = [sys.executable, str(REPO / "scripts" / "eval.py"), "--run", str(run), "--quiet",
           "--set", "resources.cpus_per_job=2", "eval.train.epochs=3"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    pool = run / "eval" / "pool.tsv"
    # The moment: the first model's result is in pool.tsv (an event, however long the
    # model took to train here); the second is still to come or training.
    wait_for(lambda: pool.exists() and read_tsv(pool), "a first eval result")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {r["parent_id"]: r for r in read_tsv(pool)}
    assert finished

    # The same command again, in this process (on the suite's Ray instance).
    assert eval_main(cmd[2:]) == 0, capsys.readouterr().err[-2000:]
    records = history(run / "eval")
    submitted = [r["spec"]["parent_id"] for r in records if r["event"] == "submit"]
    for model in finished:
        assert submitted.count(model) == 1  # a finished model is never retrained
    after = {r["parent_id"]: r for r in read_tsv(pool)}
    assert len(after) == 2
    for model, row in finished.items():
        assert after[model] == row


def test_a_capped_gallery_spreads_along_the_hull():
    from petrinas.evaluate import gallery_models
    # A convex, decreasing frontier of 6 models plus one in the band but off the hull.
    points = [(10, 0.30), (20, 0.18), (30, 0.11), (40, 0.07), (60, 0.05), (100, 0.04)]
    rows = [{"trial_id": f"t{i}", "status": "ok", "macs": m, "val_top1": 1 - e}
            for i, (m, e) in enumerate(points)]
    rows.append({"trial_id": "t9", "status": "ok", "macs": 35, "val_top1": 1 - 0.0905})
    assert gallery_models(rows, 0.025, 0) == ["t0", "t1", "t2", "t9", "t3", "t4", "t5"]
    assert gallery_models(rows, 0.025, 3) == ["t0", "t2", "t5"]  # ends always in
    assert gallery_models(rows, 0.025, 1) == ["t5"]
    assert gallery_models(rows, 0.025, 6) == ["t0", "t1", "t2", "t3", "t4", "t5"]
    assert gallery_models(rows, 0.025, 7) == ["t0", "t1", "t2", "t9", "t3", "t4", "t5"]


@pytest.mark.parametrize("axis,column,label,extra", [
    ("params", "params", "Parameters", []),
    ("latency", "latency_ms", "Latency (ms)", ["search.hv_ref_cost=50"]),
])
def test_a_search_and_its_eval_on_another_cost_axis(tmp_path, axis, column, label, extra):
    """search.cost drives the hull, band, gallery, plots and tables; every trial records
    its latency whatever the axis; resuming on another axis is refused."""
    from petrinas.report import figures
    from petrinas.report.frontier import frontier_ids

    run = tmp_path / "run"
    sets = ["search.max_trials=4", "eval.enabled=true", *TINY, *EVAL_TINY,
            f"search.cost={axis}", *extra]
    assert search_main(["--out", str(run), "--quiet", "--set", *sets]) == 0
    rows = read_tsv(run / "pool.tsv")
    assert all(float(r["latency_ms"]) > 0 for r in rows)
    hull, band = frontier_ids(rows, 0.025, cost_key=column)
    assert [r["trial_id"] for r in read_tsv(run / "frontier.tsv")] == hull
    assert sorted(p.name for p in (run / "gallery").iterdir()) == sorted(band)
    fig = figures.frontier_figure(rows, band, 0.025, cost_key=column)
    assert fig.axes[0].get_xlabel() == label
    eval_rows = read_tsv(run / "eval" / "frontier.tsv")
    table = (run / "eval" / "frontier.md").read_text().splitlines()[2:]
    costs = [float(r[column]) for r in eval_rows]
    assert [line.split(" | ")[1] for line in table] == [
        r["trial_id"] for _, r in sorted(zip(costs, eval_rows), key=lambda p: p[0])]
    other = "macs" if axis != "macs" else "params"
    assert search_main(["--out", str(run), "--quiet", "--set", *sets[:-1 - len(extra)],
                        f"search.cost={other}", *extra]) == 2


def test_a_cost_cap_for_another_axis_and_a_latency_axis_without_reference_exit_2(capsys):
    assert search_main(["--set", "search.max_params=1000"]) == 2
    assert "search.max_params limits the params axis, but search.cost is macs" in \
        capsys.readouterr().err
    assert search_main(["--set", "search.cost=latency"]) == 2
    assert "search.cost=latency needs search.hv_ref_cost" in capsys.readouterr().err


def test_each_eval_model_is_stored_once_and_the_summary_is_frontier_mds_best(pipeline_run,
                                                                            tmp_path):
    """One folder per model (trials/<eval id>, the store's), no copy under its gallery
    name; the summary's best model is frontier.md's last row (lowest validation error),
    with that row's test error; best_model and load_model read the same folder."""
    from petrinas import best_model
    from petrinas.evaluate import run_eval

    eval_dir = pipeline_run / "eval"
    rows = read_tsv(eval_dir / "pool.tsv")
    assert not [r["parent_id"] for r in rows if (eval_dir / r["parent_id"]).exists()]
    summary = run_eval(pipeline_run)   # nothing left to train: reads the finished stage
    last = (eval_dir / "frontier.md").read_text().splitlines()[-1].split(" | ")
    assert summary.best_model == last[0].lstrip("| ")
    assert f"{summary.best_test_error * 100:.2f}" == last[-1].rstrip(" |")
    folder = best_model(eval_dir)
    assert folder == eval_dir / "trials" / last[1]
    assert load_model(folder).desc.cells >= 1
    # An older eval directory, with a copy under the gallery name too, still reads.
    old = tmp_path / "eval"
    shutil.copytree(eval_dir, old)
    shutil.copytree(folder, old / summary.best_model)
    assert best_model(old) == old / "trials" / last[1]
    assert load_model(old / summary.best_model).desc == load_model(folder).desc


# Eval rows where validation and test disagree: e1 and e2 tie on validation error, so
# the frontier keeps the cheaper e1 (test error 0.84 %); e2 has the least test error.
TIED = [("e0", "t0", 100, 0.95, 0.99), ("e1", "t1", 200, 0.97, 0.9916),
        ("e2", "t2", 300, 0.97, 1.0)]


def _tied_rows() -> list[dict]:
    return [{"trial_id": t, "parent_id": p, "stage": "eval", "status": "ok", "macs": m,
             "params": m, "cells": 2, "reductions": 0, "nodes": 1, "val_top1": v,
             "test_top1": test, "compute_s": 1.0} for t, p, m, v, test in TIED]


def test_the_best_model_and_the_figure_follow_validation_error_like_the_tables(tmp_path):
    """The eval stage's reporter writes frontier.tsv/.md and the figure from these rows;
    the best model and the figure's frontier are those of the tables, never chosen on
    test error."""
    from petrinas.evaluate import best_eval_row, eval_reporter
    from petrinas.report import figures
    from petrinas.report.progress import Progress

    rows = _tied_rows()
    reporter = eval_reporter(tmp_path, load_config("petridish_digits"), [],
                             Progress(enabled=False), total=lambda: len(rows))
    reporter.start(rows)
    reporter.finish()
    frontier = read_tsv(tmp_path / "frontier.tsv")
    assert [r["trial_id"] for r in frontier] == ["e0", "e1"]
    assert (tmp_path / "frontier.png").is_file()
    best = best_eval_row(rows, 0.025, "macs")
    assert best["trial_id"] == "e1" and 1 - best["test_top1"] == pytest.approx(0.0084)
    assert (tmp_path / "frontier.md").read_text().splitlines()[-1].endswith("| 0.84 |")

    ax = figures.eval_frontier_figure(rows, 0.025).axes[0]
    line = next(l for l in ax.get_lines() if l.get_label() == figures.FRONTIER_LABEL)
    assert list(line.get_xdata()) == [float(r["macs"]) for r in frontier]
    assert list(line.get_ydata()) == pytest.approx(
        [100 * (1 - float(r["test_top1"])) for r in frontier])
    assert sum(len(c.get_offsets()) for c in ax.collections) == 3   # every model drawn


def test_a_capped_gallery_names_what_it_leaves_out():
    from petrinas.evaluate import gallery_models, left_out
    points = [(10, 0.30), (20, 0.18), (30, 0.11), (40, 0.07), (60, 0.05), (100, 0.04)]
    rows = [{"trial_id": f"t{i}", "status": "ok", "macs": m, "val_top1": 1 - e}
            for i, (m, e) in enumerate(points)]
    config = load_config("petridish_digits", ["eval.max_models=3"])
    models = gallery_models(rows, 0.025, 3)
    assert left_out(rows, models, config) == (
        "eval.max_models=3 keeps 3 of the 6 gallery models: the hull's ends, then models "
        "spread along it, then the cheapest others; left out: t1, t3, t4")
    assert left_out(rows, gallery_models(rows, 0.025, 0), config) == ""
