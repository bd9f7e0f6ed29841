"""compare: grouping, equal-compute hypervolume, the paired interval and the files, on
run directories written by hand (compare reads files only), so every figure is exact."""

import pytest
import yaml

from petrinas.compare import compare, group_runs, load_run, paired_bootstrap
from petrinas.errors import InputError
from petrinas.search.report import HV_COLUMNS
from petrinas.search.rows import COLUMNS

REF = {"hv_ref_cost": 1000.0, "hv_ref_error": 0.5}


def write_run(path, *, strategy="petridish", seed=0, hv=(), rows=(), dataset="digits",
              ref=REF, **search):
    """A finished run: config.yaml, pool.tsv (ok rows of (macs, val, test)) and
    hypervolume.tsv ((compute_s, hv_test) per result)."""
    path.mkdir(parents=True)
    config = {"seed": seed, "dataset": {"name": dataset, "root": ""},
              "search": {"strategy": strategy, "convex_hull_eps": 0.0, **ref, **search},
              "resources": {"max_concurrent": seed + 1}}    # ignored by grouping
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    lines = ["\t".join(COLUMNS)]
    for k, (macs, val, test) in enumerate(rows):
        row = {c: "" for c in COLUMNS}
        row.update(trial_id=f"t{k:04d}", stage="seed", status="ok", macs=str(macs),
                   val_top1=str(val), test_top1=str(test))
        lines.append("\t".join(row[c] for c in COLUMNS))
    (path / "pool.tsv").write_text("\n".join(lines) + "\n")
    hv_lines = ["\t".join(HV_COLUMNS)] + [f"{k + 1}\t{c}\t{v}\t{v}" for k, (c, v) in enumerate(hv)]
    (path / "hypervolume.tsv").write_text("\n".join(hv_lines) + "\n")
    return path


def test_paired_bootstrap_of_constant_differences_is_that_constant():
    mean, lo, hi = paired_bootstrap([0.5, 0.7, 0.9], [0.4, 0.6, 0.8])
    assert (mean, lo, hi) == pytest.approx((0.1, 0.1, 0.1))


def test_paired_bootstrap_interval_covers_the_pairs_and_orders():
    mean, lo, hi = paired_bootstrap([1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0])
    assert mean == pytest.approx(1.5)
    assert 0.0 <= lo < 1.5 < hi <= 3.0


def test_hypervolume_is_read_at_equal_compute_as_a_step(tmp_path):
    run = load_run(write_run(tmp_path / "r", hv=[(10, 0.1), (20, 0.3), (30, 0.4)]))
    assert [run.hv_at(c) for c in (5, 10, 19.9, 20, 100)] == [0.0, 0.1, 0.1, 0.3, 0.4]
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
    ({"ref": {"hv_ref_cost": 2000.0, "hv_ref_error": 0.5}},
     "runs of different hypervolume reference point cannot be compared"),
    ({"seed": 0}, "two runs of the same seed"),
])
def test_what_cannot_be_compared_is_refused(tmp_path, other, message):
    a = write_run(tmp_path / "a")
    b = write_run(tmp_path / "b", **{"seed": 1, **other})
    with pytest.raises(InputError, match=message):
        compare([a, b], tmp_path / "out")


def test_a_folder_that_is_not_a_finished_run_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: not a finished run"):
        compare([tmp_path / "empty"], tmp_path / "out")


def test_compare_writes_tables_and_figures_with_exact_figures(tmp_path):
    rows = [(100, 0.9, 0.95), (500, 0.95, 0.97)]
    dirs = [write_run(tmp_path / "p0", seed=0, hv=[(10, 0.20), (40, 0.30)], rows=rows),
            write_run(tmp_path / "p1", seed=1, hv=[(10, 0.22), (50, 0.34)], rows=rows),
            write_run(tmp_path / "r0", strategy="random_search", seed=0,
                      hv=[(20, 0.10), (30, 0.25)], rows=rows[1:]),
            write_run(tmp_path / "r1", strategy="random_search", seed=1,
                      hv=[(35, 0.15)], rows=rows[1:])]
    summaries = compare(dirs, tmp_path / "out")
    # Equal compute is the least any run used: 30 device seconds (r0).
    assert [s.hv_equal for s in summaries] == [[0.20, 0.22], [0.25, 0.0]]
    assert [s.hv_final for s in summaries] == [[0.30, 0.34], [0.25, 0.15]]
    # Budgets are the quartiles of the gallery costs (100, 100, 500, 500, 500, 500):
    # 200, 500 and 500 MACs.
    assert summaries[0].best == [[pytest.approx(0.05)] * 2, [pytest.approx(0.03)] * 2,
                                 [pytest.approx(0.03)] * 2]
    assert summaries[1].best == [[None, None], [pytest.approx(0.03)] * 2,
                                 [pytest.approx(0.03)] * 2]
    assert "best test error (%) ≤ 200 MACs" in (tmp_path / "out" / "compare.md").read_text()
    markdown = (tmp_path / "out" / "compare.md").read_text()
    assert "| petridish | 2 | 0.2100 ± 0.0141 | 0.3200 ± 0.0283 |" in markdown
    # random_search - petridish at equal compute: +0.05 and -0.22 (mean -0.085).
    assert "-0.0850 [-0.2200, +0.0500] (2 pairs)" in markdown
    assert "after 0.008 device hours" in markdown
    tex = (tmp_path / "out" / "compare.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex and "random\\_search" in tex
    for name in ("hypervolume", "frontiers"):
        for ext in ("png", "pdf"):
            assert (tmp_path / "out" / f"{name}.{ext}").stat().st_size > 1000


def test_compute_saved_by_duplicates_is_the_median_child_minus_what_they_paid(tmp_path):
    path = write_run(tmp_path / "r", hv=[(10, 0.1)])
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
    from petrinas.compare import saved_by_duplicates
    assert saved_by_duplicates(load_run(path)) == (14 - 4) + (14 - 5)


def test_one_run_per_group_shows_no_spread_no_interval_and_warns(tmp_path, capsys):
    """± 0.0000 and a zero-width interval from one pair would read as certainty."""
    from petrinas.cli import compare_main

    rows = [(100, 0.9, 0.95)]
    dirs = [write_run(tmp_path / "p0", seed=0, hv=[(10, 0.20)], rows=rows),
            write_run(tmp_path / "r0", strategy="random_search", seed=0, hv=[(10, 0.25)],
                      rows=rows)]
    assert compare_main([*map(str, dirs), "--out", str(tmp_path / "out")]) == 0
    markdown = (tmp_path / "out" / "compare.md").read_text()
    assert "±" not in markdown.split("\n\n")[0]               # the table
    assert "| petridish | 1 | 0.2000 | 0.2000 |" in markdown
    assert "+0.0500, no interval (1 pair; needs ≥ 2 paired seeds)" in markdown
    assert "[+0.0500, +0.0500]" not in markdown
    assert "a group of one run shows its value alone (no std)" in markdown.lower()
    assert "needs ≥ 2 paired seeds" in (tmp_path / "out" / "compare.tex").read_text()
    err = capsys.readouterr().err
    assert err == ("warning: petridish (1 run), random_search (1 run): fewer than 2 runs, "
                   "so no ± std and no interval for them; run more seeds to compare with "
                   "confidence\n")
