"""Compare finished runs: does one strategy find better frontiers than another, for the
same compute?

`compare(run_dirs, out_dir)` groups the runs by strategy and by any other configuration
difference it finds (the run seed aside: runs of one group differ only in their seed),
and writes:

* `compare.md` / `compare.tex` (booktabs): per group, the runs, the hypervolume of the
  gallery's test front at equal compute (the least compute any run used, read off each
  run's hypervolume.tsv) and at the end, mean ± std over seeds, the best gallery test
  error under a few MAC budgets, the compute used and the duplicates skipped; and for
  every group against the first, a paired bootstrap 95 % interval of the difference in
  hypervolume at equal compute, pairing runs of the same seed;
* `hypervolume.{png,pdf}`: hypervolume against cumulative compute, mean over seeds with
  a band from the lowest to the highest seed;
* `frontiers.{png,pdf}`: each run's gallery test-error frontier, coloured by group.

Runs of different datasets or hypervolume reference points cannot be compared: refused.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from petrinas.config import COST_COLUMNS, Config, read_yaml_file
from petrinas.errors import InputError
from petrinas.fileio import write_text_atomic
from petrinas.search import figures, hull
from petrinas.tables import latex_escape, si

# Keys that do not change what a run measures: they never split groups.
IGNORED = ("seed", "name", "resources", "search.plot_interval_s", "search.max_hours",
           "eval")
BOOTSTRAP_SAMPLES = 10_000
MIN_PAIRS = 2  # runs (seeds) a spread and a paired interval need
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


@dataclass
class Run:
    path: Path
    config: dict
    rows: list[dict]       # pool.tsv, numbers parsed
    hv: list[dict]         # hypervolume.tsv, numbers parsed

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    @property
    def compute_s(self) -> float:
        return self.hv[-1]["compute_s"] if self.hv else 0.0

    def hv_at(self, compute_s: float, key: str = "hv_test") -> float:
        """The hypervolume after the last result at or before `compute_s` of compute."""
        value = 0.0
        for row in self.hv:
            if row["compute_s"] > compute_s + 1e-9:
                break
            value = row[key]
        return value

    @property
    def cost_key(self) -> str:
        """The pool.tsv column of the run's cost axis (search.cost)."""
        return COST_COLUMNS[self.config["search"].get("cost", "macs")]

    def gallery(self) -> list[dict]:
        """The final ε-band (gallery) rows, with their test error."""
        eps = float(self.config["search"]["convex_hull_eps"])
        ok = [r for r in self.rows if r.get("status") == "ok" and r.get("val_top1") is not None]
        if not ok:
            return []
        band = hull.eps_band([r[self.cost_key] for r in ok], [1 - r["val_top1"] for r in ok],
                             eps)
        return [ok[i] for i in band if ok[i].get("test_top1") is not None]


@dataclass
class Group:
    label: str
    runs: list[Run]


def load_run(path: Path) -> Run:
    path = Path(path)
    for name in ("config.yaml", "pool.tsv", "hypervolume.tsv"):
        if not (path / name).is_file():
            raise InputError(f"{path}: not a finished run ({name} missing)")
    return Run(path, read_yaml_file(path / "config.yaml"), _read_tsv(path / "pool.tsv"),
               _read_tsv(path / "hypervolume.tsv"))


def _read_tsv(path: Path) -> list[dict]:
    with open(path) as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f, delimiter="\t")]


def _number(text: str):
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text else value


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if any(full == k or full.startswith(k + ".") for k in IGNORED):
            continue
        if isinstance(value, dict):
            out.update(_flat(value, f"{full}."))
        else:
            out[full] = value
    return out


def _with_defaults(config: dict) -> dict:
    """The run's config with the keys it predates at their defaults, so a run written
    before a key existed groups with runs that hold its default value."""
    try:
        return Config.from_dict(config).to_dict()
    except InputError:   # not a config this version reads: compare what it holds
        return config


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Runs grouped by every configuration key on which they differ (seed aside),
    strategy first; a group's label names its strategy and those keys' values. Groups
    come in the order their first run was given."""
    flats = [_flat(_with_defaults(r.config)) for r in runs]
    for key, what in (("dataset.name", "dataset"), ("dataset.root", "dataset"),
                      ("search.cost", "cost axis"),
                      ("search.hv_ref_cost", "hypervolume reference point"),
                      ("search.hv_ref_error", "hypervolume reference point")):
        values = {str(f.get(key)) for f in flats}
        if len(values) > 1:
            raise InputError(f"runs of different {what} cannot be compared "
                             f"({key}: {', '.join(sorted(values))})")
    differing = sorted({k for f in flats for k in f if len({str(g.get(k)) for g in flats}) > 1}
                       - {"search.strategy"})
    groups: dict[str, Group] = {}
    for run, flat in zip(runs, flats):
        label = ", ".join([str(flat.get("search.strategy", "petridish"))]
                          + [f"{k}={flat.get(k)}" for k in differing])
        groups.setdefault(label, Group(label, [])).runs.append(run)
    for group in groups.values():
        seeds = [r.seed for r in group.runs]
        if len(seeds) != len(set(seeds)):
            raise InputError(f"group {group.label!r} has two runs of the same seed "
                             f"({sorted(seeds)}): give each configuration once per seed")
    return list(groups.values())


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, samples: int = BOOTSTRAP_SAMPLES,
                     seed: int = 0) -> tuple[float, float, float]:
    """(mean difference a - b, 2.5th, 97.5th percentile) over bootstrap resamples of the
    pairs (a[i], b[i]): a 95 % interval for the mean paired difference."""
    diffs = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if len(diffs) == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = diffs[rng.integers(len(diffs), size=(samples, len(diffs)))].mean(axis=1)
    return float(diffs.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def mac_budgets(runs: Sequence[Run]) -> list[float]:
    """Three cost budgets a table reports the best test error under: the quartiles of
    every run's gallery costs (to two significant digits), the same for every group, so
    they fall where the frontiers are whatever the reference point."""
    costs = [r[run.cost_key] for run in runs for r in run.gallery()]
    if not costs:
        return []
    return [float(f"{q:.2g}") for q in np.percentile(costs, [25, 50, 75])]


def best_under(run: Run, budget: float) -> float | None:
    errors = [1 - r["test_top1"] for r in run.gallery() if r[run.cost_key] <= budget]
    return min(errors) if errors else None


# ----------------------------------------------------------------------- outputs

@dataclass
class Summary:
    """One group's figures for the tables."""
    label: str
    seeds: list[int]
    hv_equal: list[float]      # per run, at equal compute
    hv_final: list[float]
    best: list[list[float | None]]   # per budget, per run
    compute_h: list[float]
    duplicates: list[int]
    saved_s: list[float]       # per run, device seconds the skipped post-training saved


def summarize(groups: Sequence[Group], equal_compute_s: float, budgets: Sequence[float]
              ) -> list[Summary]:
    out = []
    for g in groups:
        runs = sorted(g.runs, key=lambda r: r.seed)
        out.append(Summary(
            g.label, [r.seed for r in runs], [r.hv_at(equal_compute_s) for r in runs],
            [r.hv[-1]["hv_test"] for r in runs],
            [[best_under(r, b) for r in runs] for b in budgets],
            [r.compute_s / 3600 for r in runs],
            [sum(row.get("status") == "duplicate" for row in r.rows) for r in runs],
            [saved_by_duplicates(r) for r in runs]))
    return out


def saved_by_duplicates(run: Run) -> float:
    """Device seconds the run's duplicates did not spend: each paid its search phase
    only, where a trained child of its kind costs the median of the run's ok ones."""
    dups = [r for r in run.rows if r.get("status") == "duplicate"]
    if not dups:
        return 0.0
    for stage in ("search", "random"):
        full = [r["compute_s"] for r in run.rows if r.get("status") == "ok"
                and r.get("stage") == stage]
        if full and any(d.get("stage") == stage for d in dups):
            median = float(np.median(full))
            return sum(max(median - d["compute_s"], 0.0) for d in dups if d.get("stage") == stage)
    return 0.0


def _mean_std(values: Sequence[float], scale: float = 1.0, digits: int = 4) -> str:
    """`mean ± std`; one value alone has no spread to show (`± 0` would claim one)."""
    values = [v * scale for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {float(np.std(values, ddof=1)):.{digits}f}"


def _intervals(summaries: Sequence[Summary]) -> list[str]:
    """For each group after the first: the paired bootstrap interval against the first.
    One pair resamples to itself, a zero-width interval that would read as certainty, so
    it takes MIN_PAIRS."""
    base = summaries[0]
    texts = ["(reference)"]
    for s in summaries[1:]:
        common = sorted(set(s.seeds) & set(base.seeds))
        a = [s.hv_equal[s.seeds.index(k)] for k in common]
        b = [base.hv_equal[base.seeds.index(k)] for k in common]
        if len(common) < MIN_PAIRS:
            texts.append(f"{np.mean(a) - np.mean(b):+.4f}, no interval ({len(common)} pair; "
                         f"needs ≥ {MIN_PAIRS} paired seeds)" if common else "no common seeds")
            continue
        mean, lo, hi = paired_bootstrap(a, b)
        texts.append(f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}] ({len(common)} pairs)")
    return texts


def few_runs_warning(summaries: Sequence[Summary]) -> str | None:
    """One line naming the groups too small for a spread or an interval, if any."""
    small = [f"{s.label} ({len(s.seeds)} run)" for s in summaries if len(s.seeds) < MIN_PAIRS]
    if not small:
        return None
    return (f"{', '.join(small)}: fewer than {MIN_PAIRS} runs, so no ± std and no "
            f"interval for {'it' if len(small) == 1 else 'them'}; run more seeds to "
            "compare with confidence")


def tables(summaries: Sequence[Summary], budgets: Sequence[float], equal_compute_s: float,
           unit: str = "MACs") -> tuple[str, str]:
    header = (["group", "runs", "HV at equal compute", "final HV"]
              + [f"best test error (%) ≤ {si(b)} {unit}" for b in budgets]
              + ["compute (h)", "duplicates", "compute saved (s)", f"ΔHV vs {summaries[0].label} [95 % CI]"])
    body = []
    for s, interval in zip(summaries, _intervals(summaries)):
        body.append([s.label, str(len(s.seeds)), _mean_std(s.hv_equal), _mean_std(s.hv_final)]
                    + [_mean_std(per_budget, 100, 2) for per_budget in s.best]
                    + [_mean_std(s.compute_h, digits=3), _mean_std(s.duplicates, digits=1),
                       _mean_std(s.saved_s, digits=1),
                       interval])
    caption = (f"Hypervolume (HV) of the gallery's test front in the plane (log10 {unit}, "
               f"error), mean ± std over run seeds; at equal compute = after "
               f"{equal_compute_s / 3600:.3f} device hours, the least any run used. The "
               f"interval is a paired bootstrap over seeds.")
    if any(len(s.seeds) < MIN_PAIRS for s in summaries):
        caption += (f" A group of one run shows its value alone (no std), and an interval "
                    f"needs ≥ {MIN_PAIRS} paired seeds.")
    markdown = "\n".join(["| " + " | ".join(header) + " |",
                          "|:---|" + "---:|" * (len(header) - 1),
                          *("| " + " | ".join(row) + " |" for row in body)]) + "\n"
    latex = "\n".join([r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(caption)}}}",
                       r"\label{tab:compare}", r"\small",
                       r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
                       " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule",
                       *(" & ".join(latex_escape(c) for c in row) + r" \\" for row in body),
                       r"\bottomrule", r"\end{tabular}", r"\end{table}"]) + "\n"
    return markdown + "\n" + caption + "\n", latex


def hypervolume_curves(groups: Sequence[Group], points: int = 200):
    """Per group: (compute grid in hours, mean, min, max) of hv_test over its runs, on a
    grid up to the least compute its runs reached."""
    curves = []
    for g in groups:
        top = min(r.compute_s for r in g.runs)
        grid = np.linspace(0, top, points)
        values = np.array([[r.hv_at(c) for c in grid] for r in g.runs])
        curves.append((g.label, grid / 3600, values.mean(0), values.min(0), values.max(0)))
    return curves


def hypervolume_figure(groups: Sequence[Group]):
    fig, (ax,) = figures.new_figure()
    for color, (label, hours, mean, lo, hi) in zip(COLORS, hypervolume_curves(groups)):
        ax.plot(hours, mean, color=color, linewidth=1.0, label=label)
        ax.fill_between(hours, lo, hi, color=color, alpha=0.2, linewidth=0)
    ax.set_xlabel("Cumulative compute (device hours)", fontsize=figures.FONT)
    ax.set_ylabel("Hypervolume (gallery, test)", fontsize=figures.FONT)
    figures.legend(ax)
    return fig


def frontiers_figure(groups: Sequence[Group]):
    fig, (ax,) = figures.new_figure()
    axis = groups[0].runs[0].cost_key
    costs = [r[axis] for g in groups for run in g.runs for r in run.gallery()]
    figures.cost_axis(ax, costs, axis)
    for color, g in zip(COLORS, groups):
        for k, run in enumerate(g.runs):
            gallery = sorted(run.gallery(), key=lambda r: r[axis])
            front = hull.pareto_front([r[axis] for r in gallery],
                                      [1 - r["test_top1"] for r in gallery])
            xs = [gallery[i][axis] for i in front]
            ys = [100 * (1 - gallery[i]["test_top1"]) for i in front]
            ax.step(xs, ys, where="post", color=color, linewidth=0.8, alpha=0.8,
                    marker="o", markersize=2, label=g.label if k == 0 else None)
    ax.set_ylabel("Test error (%) of the gallery", fontsize=figures.FONT)
    figures.legend(ax)
    return fig


def compare(run_dirs: Sequence[str | Path], out_dir: str | Path) -> list[Summary]:
    """Write the comparison of `run_dirs` into `out_dir`; returns the groups' figures."""
    if not run_dirs:
        raise InputError("compare needs at least one run directory")
    runs = [load_run(Path(p)) for p in run_dirs]
    groups = group_runs(runs)
    equal = min(r.compute_s for r in runs)
    budgets = mac_budgets(runs)
    summaries = summarize(groups, equal, budgets)
    out = Path(out_dir)
    unit = {"macs": "MACs", "params": "params", "latency_ms": "ms"}[runs[0].cost_key]
    markdown, latex = tables(summaries, budgets, equal, unit)
    write_text_atomic(out / "compare.md", markdown)
    write_text_atomic(out / "compare.tex", latex)
    figures.save(hypervolume_figure(groups), out / "hypervolume")
    figures.save(frontiers_figure(groups), out / "frontiers")
    return summaries
