"""compare: grouping, equal-compute figures, selection on validation, the paired interval
and the files, on run directories written by hand (compare reads files only), so every
figure is exact.

The runs below use the box (floor 10, ceiling 1000 MACs, error 0.5) and ε = 0, so a
gallery model at 100 MACs with test error e adds one decade times (0.5 - e), and one at
10 MACs two decades up to the next model's cost."""

import pytest
import yaml

from petrinas.compare import (compare, front_at, group_runs, hypervolume_curves, load_run,
                              paired_bootstrap, saved_by_duplicates)
from petrinas.errors import InputError
from petrinas.search.rows import COLUMNS

REF = {"hv_ref_cost": 1000.0, "hv_ref_error": 0.5, "hv_cost_floor": 10.0}


def write_run(path, *, strategy="petridish", seed=0, rows=(), dataset="digits", ref=REF,
              resources=None, device="cpu", **search):
    """A finished run: config.yaml and pool.tsv. `rows`: (macs, val_top1, test_top1,
    compute_s[, status[, stage]]) in the order the results arrived (elapsed_s 1, 2, ...);
    a "failed" or "duplicate" row has no model, only its compute."""
    path.mkdir(parents=True)
    config = {"seed": seed, "dataset": {"name": dataset, "root": ""},
              "search": {"strategy": strategy, "convex_hull_eps": 0.0, **ref, **search},
              # max_concurrent differs by seed: it changes no job's compute, so it is ignored.
              "resources": {"max_concurrent": seed + 1, **(resources or {})}}
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    lines = ["\t".join(COLUMNS)]
    for k, (macs, val, test, compute, *rest) in enumerate(rows):
        status, stage = (*rest, *("ok", "seed")[len(rest):])
        row = {c: "" for c in COLUMNS}
        row.update(trial_id=f"t{k:04d}", stage=stage, status=status,
                   compute_s=str(compute), elapsed_s=str(k + 1.0), device=device)
        if status == "failed":
            row.update(error="TrainingError: loss became nan")
        elif status == "ok":
            row.update(macs=str(macs), val_top1=str(val), test_top1=str(test))
        lines.append("\t".join(row[c] for c in COLUMNS))
    (path / "pool.tsv").write_text("\n".join(lines) + "\n")
    return path


def one_model(path, seed, hv, strategy="petridish", compute=10):
    """A run whose gallery is one model at 100 MACs with hypervolume `hv`."""
    error = 0.5 - hv
    return write_run(path, strategy=strategy, seed=seed,
                     rows=[(100, 1 - error, 1 - error, compute)])


def test_paired_bootstrap_of_constant_differences_is_that_constant():
    mean, lo, hi = paired_bootstrap([0.5, 0.7, 0.9], [0.4, 0.6, 0.8])
    assert (mean, lo, hi) == pytest.approx((0.1, 0.1, 0.1))


def test_paired_bootstrap_interval_covers_the_pairs_and_orders():
    mean, lo, hi = paired_bootstrap([1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0])
    assert mean == pytest.approx(1.5)
    assert 0.0 <= lo < 1.5 < hi <= 3.0


def test_hypervolume_is_read_at_each_compute_from_the_results_that_had_arrived(tmp_path):
    """t0 (100 MACs, error .3) then t1 (10, .4) then t2 (100, val .1, test .15), 10 s
    each: t2 replaces t0 in the gallery (same cost, better validation error)."""
    run = load_run(write_run(tmp_path / "r", rows=[(100, 0.7, 0.7, 10), (10, 0.6, 0.6, 10),
                                                   (100, 0.9, 0.85, 10)]))
    assert [run.hv_at(c) for c in (5, 10, 19.9, 20, 30, 100)] == pytest.approx(
        [0.0, 0.2, 0.2, 0.1 + 0.2, 0.1 + 0.35, 0.45])
    assert run.compute_s == 30


def test_runs_group_by_strategy_and_by_any_other_difference(tmp_path):
    runs = [load_run(write_run(tmp_path / name, strategy=s, seed=seed, l1=l1))
            for name, s, seed, l1 in [("a0", "petridish", 0, 0.001), ("a1", "petridish", 1, 0.001),
                                      ("b0", "random_search", 0, 0.001),
                                      ("c0", "petridish", 0, 0.01)]]
    groups = group_runs(runs)
    assert [(g.label, [r.path.name for r in g.runs]) for g in groups] == [
        ("petridish, search.l1=0.001", ["a0", "a1"]),
        ("random_search, search.l1=0.001", ["b0"]),
        ("petridish, search.l1=0.01", ["c0"])]


@pytest.mark.parametrize("other,message", [
    ({"dataset": "cifar10"}, "runs of different dataset cannot be compared"),
    ({"ref": {**REF, "hv_ref_cost": 2000.0}},
     "runs of different hypervolume reference point cannot be compared"),
    ({"ref": {**REF, "hv_cost_floor": 20.0}},
     r"runs of different hypervolume reference point cannot be compared "
     r"\(search.hv_cost_floor: 10.0, 20.0\)"),
    ({"resources": {"cpus_per_job": 2}},
     r"runs of different per-job resources \(compute is device-seconds times the job's "
     r"share of its device\) cannot be compared \(resources.cpus_per_job: 1.0, 2.0\)"),
    ({"resources": {"gpus_per_job": 0.5}}, r"resources.gpus_per_job: 0.0, 0.5"),
    ({"device": "cuda:NVIDIA H200"}, r"runs on different devices cannot be compared at "
                                     r"equal compute \(device: cpu / cuda:NVIDIA H200\)"),
    ({"seed": 0}, "two runs of the same seed"),
])
def test_what_cannot_be_compared_is_refused(tmp_path, other, message):
    a = write_run(tmp_path / "a", rows=[(100, 0.9, 0.9, 10)])
    b = write_run(tmp_path / "b", **{"seed": 1, "rows": [(100, 0.9, 0.9, 10)], **other})
    with pytest.raises(InputError, match=message):
        compare([a, b], tmp_path / "out")


def test_resources_that_change_no_jobs_compute_may_differ(tmp_path):
    """max_concurrent (and so search_quality --parallel) and retries: one group."""
    dirs = [write_run(tmp_path / "a", seed=0, rows=[(100, 0.9, 0.9, 10)],
                      resources={"max_concurrent": 1, "max_retries": 0}),
            write_run(tmp_path / "b", seed=1, rows=[(100, 0.9, 0.9, 10)],
                      resources={"max_concurrent": 4, "max_retries": 3})]
    assert [len(g.runs) for g in group_runs([load_run(d) for d in dirs])] == [2]


def test_a_folder_that_is_not_a_finished_run_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: not a finished run"):
        compare([tmp_path / "empty"], tmp_path / "out")


def exact_runs(tmp_path):
    """Two petridish and two random_search runs; equal compute is 25 s (r0's total).
    At 25 s, each petridish run holds t0 (100 MACs, val error .3, test .3) and t1 (10,
    val .4, test .25): picked on validation, t1 scores .25 from 10 to 100 MACs and t0 .3
    from 100 on: 1 x .25 + 1 x .2 = .45, where the test front alone (t1 everywhere)
    would give 2 x .25 = .5. p0's t2 (val .1, test .15) arrives at 30 s: too late."""
    rows = [(100, 0.7, 0.7, 10), (10, 0.6, 0.75, 10)]
    return [write_run(tmp_path / "p0", seed=0, rows=rows + [(100, 0.9, 0.85, 10)]),
            write_run(tmp_path / "p1", seed=1, rows=rows + [(100, 0.9, 0.85, 30)]),
            write_run(tmp_path / "r0", strategy="random_search", seed=0,
                      rows=[(100, 0.8, 0.8, 25)]),
            write_run(tmp_path / "r1", strategy="random_search", seed=1,
                      rows=[(10, 0.6, 0.6, 5), (100, 0.8, 0.8, 30)])]


def test_compare_writes_tables_and_figures_with_exact_figures(tmp_path):
    summaries = compare(exact_runs(tmp_path), tmp_path / "out")
    # r0: .3 (one decade x .3); r1 at 25 s holds only its 10-MAC model: 2 x .1.
    assert [s.hv_equal for s in summaries] == [pytest.approx([0.45, 0.45]),
                                               pytest.approx([0.3, 0.2])]
    # Budgets: quartiles of the gallery costs at 25 s (10, 100, 10, 100, 100, 10): 10,
    # 55, 100. Under each, the test error of the least validation error: t1's .25 up to
    # 55 MACs, then t0's .3, though t1's test error is lower.
    assert summaries[0].best == [[pytest.approx(0.25)] * 2, [pytest.approx(0.25)] * 2,
                                 [pytest.approx(0.3)] * 2]
    assert summaries[1].best == [[None, pytest.approx(0.4)], [None, pytest.approx(0.4)],
                                 [pytest.approx(0.2), pytest.approx(0.4)]]
    assert summaries[1].compute_h == pytest.approx([25 / 3600, 35 / 3600])  # whole runs
    markdown = (tmp_path / "out" / "compare.md").read_text()
    assert ("| group | runs | HV at equal compute | test error (%) of the pick ≤ 10 MACs | "
            "test error (%) of the pick ≤ 55 MACs | test error (%) of the pick ≤ 100 MACs | "
            "duplicates | compute saved (s) | compute, whole run (h) |") in markdown
    assert "| petridish | 2 | 0.4500 ± 0.0000 | 25.00 ± 0.00 | 25.00 ± 0.00 | 30.00 ± 0.00 |" \
        in markdown
    # random_search - petridish at equal compute: -0.15 and -0.25 (mean -0.2).
    assert "-0.2000 [-0.2500, -0.1500] (2 pairs)" in markdown
    assert "after 0.007 device hours" in markdown
    assert "picked on validation error and reported at their test error" in markdown
    tex = (tmp_path / "out" / "compare.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and "random\\_search" in tex
    for name in ("hypervolume", "frontiers"):
        for ext in ("png", "pdf"):
            assert (tmp_path / "out" / f"{name}.{ext}").stat().st_size > 1000


def test_the_figures_read_every_run_at_the_same_compute(tmp_path):
    """The curve of a group ends at the least compute of its runs, where each run is
    read (not at its own end: p1's t2 arrives at 50 s and would give .6); the frontier
    is drawn at equal compute, from the models picked on validation there."""
    runs = [load_run(d) for d in exact_runs(tmp_path)]
    (p_label, p_hours, p_mean, p_lo, p_hi), (r_label, r_hours, r_mean, r_lo, r_hi) = \
        hypervolume_curves(group_runs(runs))
    assert (p_label, r_label) == ("petridish", "random_search")
    # petridish ends at 30 s: p0 holds t2 by then (.25 + .35 = .6), p1 does not (.45).
    assert (p_hours[-1], p_mean[-1], p_lo[-1], p_hi[-1]) == pytest.approx(
        (30 / 3600, 0.525, 0.45, 0.6))
    # random_search ends at 25 s, the equal-compute point: the table's values.
    assert (r_hours[-1], r_mean[-1], r_lo[-1], r_hi[-1]) == pytest.approx(
        (25 / 3600, 0.25, 0.2, 0.3))
    assert front_at(runs[0], 25) == ([10, 100], pytest.approx([25.0, 30.0]))
    assert front_at(runs[0], 30) == ([10, 100], pytest.approx([25.0, 15.0]))


def test_groups_are_paired_by_seed_whatever_their_order_and_extra_seeds(tmp_path):
    """Group a ran seeds 2, 0, 1 (given in that order), group b seeds 3, 2, 0: the pairs
    are seeds 0 and 2 (differences .05 and .1), and seeds 1 and 3 are named as left out.

    Fails if runs are paired by position (b's seed 2 with a's seed 1: .2) or in the
    order given."""
    dirs = [one_model(tmp_path / "a2", 2, 0.3), one_model(tmp_path / "a0", 0, 0.1),
            one_model(tmp_path / "a1", 1, 0.2),
            one_model(tmp_path / "b3", 3, 0.45, "random_search"),
            one_model(tmp_path / "b2", 2, 0.4, "random_search"),
            one_model(tmp_path / "b0", 0, 0.15, "random_search")]
    summaries = compare(dirs, tmp_path / "out")
    assert [(s.seeds, s.hv_equal) for s in summaries] == [
        ([0, 1, 2], pytest.approx([0.1, 0.2, 0.3])),
        ([0, 2, 3], pytest.approx([0.15, 0.4, 0.45]))]
    table = (tmp_path / "out" / "compare.md").read_text().splitlines()
    interval = next(line for line in table if line.startswith("| random_search"))
    assert interval.split(" | ")[-1] == ("+0.0750 [+0.0500, +0.1000] (2 pairs; unpaired "
                                         "seeds left out: 1, 3) |")


def test_a_failed_trial_counts_the_compute_it_spent(tmp_path):
    """p0: a model (10 s), a failed trial (20 s), a cheaper model (10 s): 40 s in all,
    and at r0's 30 s the cheaper model has not arrived (HV .2, t0 alone)."""
    dirs = [write_run(tmp_path / "p0", rows=[(100, 0.7, 0.7, 10), (None, None, None, 20,
                                                                   "failed"),
                                             (10, 0.6, 0.6, 10)]),
            write_run(tmp_path / "r0", strategy="random_search", rows=[(100, 0.8, 0.8, 30)])]
    assert load_run(dirs[0]).compute_s == 40
    summaries = compare(dirs, tmp_path / "out")
    assert summaries[0].hv_equal == pytest.approx([0.2])
    assert "after 0.008 device hours" in (tmp_path / "out" / "compare.md").read_text()


def test_compute_saved_by_duplicates_is_the_median_child_minus_what_they_paid(tmp_path):
    path = write_run(tmp_path / "r")
    lines = ["\t".join(COLUMNS)]
    for trial, stage, status, compute in [("t0", "seed", "ok", 50), ("t1", "search", "ok", 10),
                                          ("t2", "search", "ok", 14), ("t3", "search", "ok", 30),
                                          ("t4", "search", "duplicate", 4),
                                          ("t5", "search", "duplicate", 5)]:
        row = {c: "" for c in COLUMNS}
        row.update(trial_id=trial, stage=stage, status=status, compute_s=str(compute),
                   macs="100", val_top1="0.9", test_top1="0.9")
        lines.append("\t".join(row[c] for c in COLUMNS))
    (path / "pool.tsv").write_text("\n".join(lines) + "\n")
    assert saved_by_duplicates(load_run(path).rows) == (14 - 4) + (14 - 5)


def test_duplicates_and_their_savings_are_counted_at_equal_compute(tmp_path):
    """p0: a seed (10 s), a child (10 s), a duplicate (4 s), then past r0's 25 s another
    duplicate (2 s) and a child (30 s). At 25 s: one duplicate, which saved the median
    child's 10 s less its 4 (the whole run: 2 and (20 - 4) + (20 - 2) = 34).

    Fails if the duplicates or compute saved columns read the whole run."""
    dirs = [write_run(tmp_path / "p0", rows=[
                (100, 0.7, 0.7, 10), (10, 0.6, 0.6, 10, "ok", "search"),
                (None, None, None, 4, "duplicate", "search"),
                (None, None, None, 2, "duplicate", "search"),
                (10, 0.6, 0.6, 30, "ok", "search")]),
            write_run(tmp_path / "r0", strategy="random_search", rows=[(100, 0.8, 0.8, 25)])]
    summaries = compare(dirs, tmp_path / "out")
    assert (summaries[0].duplicates, summaries[0].saved_s) == ([1], [6.0])
    assert (summaries[1].duplicates, summaries[1].saved_s) == ([0], [0.0])
    # The table's columns: HV .3 (t1 from 10 to 100 MACs, t0 on), the picks under 55 and
    # 100 MACs, 1 duplicate, 6 s saved, and the whole run's 56 s (in hours).
    assert ("| petridish | 1 | 0.3000 | 40.00 | 30.00 | 30.00 | 1.0 | 6.0 | 0.016 | "
            "(reference) |") in (tmp_path / "out" / "compare.md").read_text()


def test_one_run_per_group_shows_no_spread_no_interval_and_warns(tmp_path, capsys):
    """± 0.0000 and a zero-width interval from one pair would read as certainty."""
    from petrinas.cli import compare_main

    dirs = [one_model(tmp_path / "p0", 0, 0.2), one_model(tmp_path / "r0", 0, 0.25,
                                                          "random_search")]
    assert compare_main([*map(str, dirs), "--out", str(tmp_path / "out")]) == 0
    markdown = (tmp_path / "out" / "compare.md").read_text()
    assert "±" not in markdown.split("\n\n")[0]               # the table
    assert "| petridish | 1 | 0.2000 |" in markdown
    assert "+0.0500, no interval (1 pair; needs ≥ 2 paired seeds)" in markdown
    assert "[+0.0500, +0.0500]" not in markdown
    assert "a group of one run shows its value alone (no std)" in markdown.lower()
    assert "needs ≥ 2 paired seeds" in (tmp_path / "out" / "compare.tex").read_text()
    err = capsys.readouterr().err
    assert err == ("warning: petridish (1 run), random_search (1 run): fewer than 2 runs, "
                   "so no ± std and no interval for them; run more seeds to compare with "
                   "confidence\n")
