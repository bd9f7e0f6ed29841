"""benchmarks/pair_value.py: its statistics by hand, and a tiny run that resumes."""

import math

import pytest

from support import REPO, load_script, read_tsv


def _bench():
    return load_script(REPO / "benchmarks" / "pair_value.py")


bench = _bench()


def test_ranks_and_spearman_with_ties():
    """Fails if ties stop sharing their mean rank or the correlation is not Pearson's
    on the ranks."""
    assert bench.ranks([3, 1, 2, 2]).tolist() == [4, 1, 2.5, 2.5]
    assert bench.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert bench.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # Ranks [1, 2.5, 2.5, 4] against [1, 2, 3, 4]: 4.5 / sqrt(4.5 * 5).
    assert bench.spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    assert math.isnan(bench.spearman([1, 1, 1], [1, 2, 3]))


def test_permutation_p_shuffles_within_each_parent():
    """Two parents of two pairs, both ranked right: each shuffle gives +1 or -1 per
    parent, so a mean of +1 comes up a quarter of the time. Fails if the shuffles are
    pooled across parents or the p-value counts the other tail."""
    p = bench.permutation_p([[1, 2], [5, 6]], [[0.1, 0.2], [0.7, 0.9]], samples=20_000)
    assert p == pytest.approx(0.25, abs=0.015)
    assert bench.permutation_p([[2, 1], [6, 5]], [[0.1, 0.2], [0.7, 0.9]],
                               samples=2_000) == 1.0


def test_bootstrap_over_parents():
    """Two parents: the resampled mean is 1, 2 or 3 (a quarter, a half, a quarter), so
    the 95 % interval is [1, 3]."""
    assert bench.bootstrap_mean([1.0, 3.0]) == (2.0, 1.0, 3.0)
    assert bench.bootstrap_mean([float("nan"), 2.0]) == (2.0, 2.0, 2.0)


def test_spread_takes_the_seed_noise_out_of_the_values():
    """Pair children [0.8, 0.9] and [0.5, 0.7]: noise variance (0.005 + 0.02) / 2, the
    means' variance 0.03125, less the noise a mean of 2 keeps: 0.025."""
    s = bench.spread([[0.8, 0.9], [0.5, 0.7]])
    assert s.noise_sd == pytest.approx(0.0125 ** 0.5)
    assert s.value_sd == pytest.approx(0.03125 ** 0.5)
    assert s.between_sd == pytest.approx(0.025 ** 0.5)
    assert s.ratio == pytest.approx((0.025 / 0.0125) ** 0.5)
    # Pooled over parents: variances averaged before the ratio (0.0125 and a parent
    # whose pairs are all alike, between 0, noise 0.0025).
    flat = bench.spread([[0.5, 0.6], [0.55, 0.45]])
    assert flat.between_sd == 0 and flat.noise_sd == pytest.approx(0.005 ** 0.5)
    assert bench.pooled_ratio([s, flat]) == pytest.approx((0.0125 / 0.00875) ** 0.5)


def test_top_k_and_overlap():
    assert bench.top_k([3, 1, 2], [0.5, 0.9, 0.7], 1) == pytest.approx(
        {"picked": 0.5, "oracle": 0.9, "random": 0.7})
    assert bench.top_k([3, 1, 2], [0.5, 0.9, 0.7], 2) == pytest.approx(
        {"picked": 0.6, "oracle": 0.8, "random": 0.7})
    assert bench.overlap([3, 2, 1, 0], [0, 2, 1, 3], k=2) == 0.5


def test_within_a_state_averages_each_states_correlation():
    """Ranked right within state 0, wrong within state 1, across the two perfectly:
    the within-state mean is 0. Fails if the groups are pooled."""
    scores, values = [1, 2, 3, 13, 12, 11], [1, 2, 3, 11, 12, 13]
    assert bench.spearman(scores, values) > 0.7
    assert bench.within_groups(scores, values, [0, 0, 0, 1, 1, 1]) == pytest.approx(0.0)
    assert math.isnan(bench.within_groups(scores, values, [0, 0, 1, 1, 2, 2]))


@pytest.mark.usefixtures("shared_ray")
def test_a_tiny_benchmark_runs_and_resumes_without_redoing_anything(tmp_path, capsys):
    """One parent, 3 pairs, 2 post-training seeds, run by the script's main in this
    process (its jobs on the suite's Ray instance): every job's result is on disk, and
    the same command again trains nothing and writes the same report. Fails if a
    finished job is not found again (a rerun would retrain it) or a result is kept
    only in memory until the end."""
    out = tmp_path / "pv"
    command = ["--parents", "1,0,1@1", "--pairs", "3", "--post-seeds", "2", "--jobs", "1",
               "--out", str(out), "--set", "search.search_train.epochs=1",
               "search.post_train.epochs=1", "model.init_channels=4",
               "dataset.max_train=200", "model.candidate_ops=[sep_conv_3x3, max_pool_3x3, "
               "skip_connect, none]"]
    assert bench.main(command) == 0
    rows = read_tsv(out / "values.tsv")
    assert len(rows) == 6 and {r["post_seed"] for r in rows} == {"0", "1"}
    assert len({r["pair"] for r in rows}) == 3
    assert (out / "phases" / "c1r0n1e1" / "s1" / "done.json").is_file()
    report = (out / "pair_value.md").read_text()
    assert "| residual |" in report and "Between-pair sd / noise sd" in report
    capsys.readouterr()
    assert bench.main(command) == 0
    assert "done (" not in capsys.readouterr().out          # no job ran again
    assert len(read_tsv(out / "values.tsv")) == 6
    assert (out / "pair_value.md").read_text() == report
    with pytest.raises(SystemExit, match="other settings"):
        bench.main([*command[:-1], "dataset.max_train=100"])
    # A variant phase added to the finished benchmark: only it runs, scored as [fast].
    assert bench.main([*command, "--variant", "fast:search.alpha_lr=0.5"]) == 0
    printed = capsys.readouterr().out
    assert "variant phase" in printed and "  child " not in printed
    with_variant = (out / "pair_value.md").read_text()
    assert "| alpha[fast] |" in with_variant
    assert "Variants (scores marked [NAME]): fast = search.alpha_lr=0.5" in with_variant
