"""Compare finished runs: does one strategy find better frontiers than another, for the
same compute?

`compare(run_dirs, out_dir)` groups the runs by strategy and by any other configuration
difference it finds (the run seed aside: runs of one group differ only in their seed),
and writes:

* `compare.md` / `compare.tex` (booktabs): per group, the runs and, read at equal
  compute (the least compute any run used), the hypervolume of the gallery picked on
  validation error and scored on test error, mean ± std over seeds, the test error of
  the model picked on validation error under a few cost budgets, and the duplicates
  skipped; the compute each run used in all (its header says so); and for every group
  against the first, a paired bootstrap 95 % interval of the difference in hypervolume
  at equal compute, pairing runs of the same seed (seeds without a partner are left
  out and named);
* `hypervolume.{png,pdf}`: that hypervolume against cumulative compute, mean over seeds
  with a band from the lowest to the highest seed;
* `frontiers.{png,pdf}`: each run's gallery at equal compute, picked on validation error
  and drawn at its test error, coloured by group.

Everything is recomputed from pool.tsv: a run's results are replayed in the order they
arrived (their driver time, `elapsed_s`), so the state at any compute is known exactly,
whatever an older hypervolume.tsv measured. Compute is pool.tsv's `compute_s` summed
over every trial, failed ones and duplicates included.

Runs of different datasets, cost axes, hypervolume boxes or per-job resources cannot be
compared: refused, with the reason.
"""

from __future__ import annotations

import bisect
import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from petrinas.config import COST_COLUMNS, Role, keys_with, read_yaml_file
from petrinas.config_loader import config_from_dict
from petrinas.errors import InputError
from petrinas.fileio import write_text_atomic
from petrinas.report import figures
from petrinas.search import hull
from petrinas.search.kinds import KINDS, Kinds
from petrinas.report.hypervolume_log import gallery_hypervolume
from petrinas.report.tsv import natural_key
from petrinas.tables import latex_escape, si

# Keys that do not change what a run measures (each declares it in config.py): they
# never split groups. Per-job resources are checked apart (`check_comparable`): they
# must be equal.
IGNORED = keys_with(Role.COMPARE_IGNORED)
# Compute is a job's device-seconds times its share of the device (pipeline.py); a job
# given another share of a device, or another device, does other work per second.
PER_JOB = ("resources.gpus_per_job", "resources.cpus_per_job")
BOOTSTRAP_SAMPLES = 10_000
MIN_PAIRS = 2  # runs (seeds) a spread and a paired interval need
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


@dataclass
class Run:
    path: Path
    config: dict
    rows: list[dict]       # pool.tsv, numbers parsed, in the order the results arrived
    _cumulative: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self):
        self.rows = sorted(self.rows, key=lambda r: (r.get("elapsed_s") or 0.0,
                                                     natural_key(str(r["trial_id"]))))
        total, self._cumulative = 0.0, []
        for row in self.rows:
            total += float(row.get("compute_s") or 0.0)
            self._cumulative.append(total)

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    @property
    def compute_s(self) -> float:
        """Every trial's compute, failed ones and duplicates included."""
        return self._cumulative[-1] if self._cumulative else 0.0

    def rows_at(self, compute_s: float) -> list[dict]:
        """The results that had arrived when the run had used `compute_s` of compute."""
        return self.rows[:bisect.bisect_right(self._cumulative, compute_s + 1e-9)]

    @property
    def cost_key(self) -> str:
        """The pool.tsv column of the run's cost axis (search.cost)."""
        return COST_COLUMNS[self.config["search"].get("cost", "macs")]

    @property
    def box(self) -> tuple[float, float, float]:
        """The hypervolume box (ref_cost, ref_error, cost_floor) of config.yaml."""
        search = self.config["search"]
        return (float(search["hv_ref_cost"]), float(search["hv_ref_error"]),
                float(search.get("hv_cost_floor") or 0.0))

    def gallery(self, rows: Sequence[dict] | None = None) -> list[dict]:
        """The ε-band (gallery) of `rows` (default: all), chosen on validation error, the
        members with a test error, cheapest first."""
        eps = float(self.config["search"]["convex_hull_eps"])
        ok = [r for r in (self.rows if rows is None else rows)
              if r.get("status") == "ok" and r.get("val_top1") is not None]
        if not ok:
            return []
        band = hull.eps_band([r[self.cost_key] for r in ok], [1 - r["val_top1"] for r in ok],
                             eps)
        return [ok[i] for i in band if ok[i].get("test_top1") is not None]

    def hv_at(self, compute_s: float) -> float:
        """The hypervolume of the gallery at `compute_s`: picked on validation error,
        scored on test error, in the run's box."""
        return gallery_hypervolume(self.gallery(self.rows_at(compute_s)), self.cost_key,
                                   self.box)


@dataclass
class Group:
    label: str
    runs: list[Run]


def load_run(path: Path) -> Run:
    path = Path(path)
    for name in ("config.yaml", "pool.tsv"):
        if not (path / name).is_file():
            raise InputError(f"{path}: not a finished run ({name} missing)")
    return Run(path, read_yaml_file(path / "config.yaml"), _read_tsv(path / "pool.tsv"))


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


def _flat(data: dict, prefix: str = "", ignored: Sequence[str] = IGNORED) -> dict:
    out = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if any(full == k or full.startswith(k + ".") for k in ignored):
            continue
        if isinstance(value, dict):
            out.update(_flat(value, f"{full}.", ignored))
        else:
            out[full] = value
    return out


def _with_defaults(config: dict) -> dict:
    """The run's config with the keys it predates at their defaults, so a run written
    before a key existed groups with runs that hold its default value."""
    try:
        return config_from_dict(config).to_dict()
    except InputError:   # not a config this version reads: compare what it holds
        return config


def _devices(run: Run) -> set[str]:
    """The kinds of device its trials ran on (cpu, cuda:<name>; stand-ins as written)."""
    return {str(r["device"]) for r in run.rows if r.get("device")}


def check_comparable(runs: Sequence[Run]) -> None:
    """Refuse, in one line, runs whose figures do not measure the same thing: another
    dataset, cost axis or hypervolume box, or compute in other units (another share of
    a device per job, or another device)."""
    flats = [_flat(_with_defaults(r.config), ignored=("seed", "name")) for r in runs]
    for key, what in (("dataset.name", "dataset"), ("dataset.root", "dataset"),
                      ("search.cost", "cost axis"),
                      ("search.hv_ref_cost", "hypervolume reference point"),
                      ("search.hv_ref_error", "hypervolume reference point"),
                      ("search.hv_cost_floor", "hypervolume reference point"),
                      *((k, "per-job resources (compute is device-seconds times the "
                            "job's share of its device)") for k in PER_JOB)):
        values = {str(f.get(key)) for f in flats}
        if len(values) > 1:
            raise InputError(f"runs of different {what} cannot be compared "
                             f"({key}: {', '.join(sorted(values))})")
    devices = {frozenset(_devices(r)) for r in runs} - {frozenset()}
    if len(devices) > 1:
        raise InputError("runs on different devices cannot be compared at equal compute "
                         f"(device: {' / '.join(sorted(', '.join(sorted(d)) for d in devices))})")


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Runs grouped by every configuration key on which they differ (seed aside),
    strategy first; a group's label names its strategy and those keys' values. Groups
    come in the order their first run was given."""
    check_comparable(runs)
    flats = [_flat(_with_defaults(r.config)) for r in runs]
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


def mac_budgets(runs: Sequence[Run], compute_s: float) -> list[float]:
    """Three cost budgets a table reports the picked model's test error under: the
    quartiles of every run's gallery costs at `compute_s` (to two significant digits),
    the same for every group, so they fall where the frontiers are."""
    costs = [r[run.cost_key] for run in runs for r in run.gallery(run.rows_at(compute_s))]
    if not costs:
        return []
    return [float(f"{q:.2g}") for q in np.percentile(costs, [25, 50, 75])]


def picked(gallery: Sequence[dict], cost_key: str, budget: float) -> dict | None:
    """The model a user would pick under `budget`: the least validation error among the
    gallery's models that cost at most that (the cheaper one on a tie)."""
    under = [r for r in gallery if r[cost_key] <= budget]
    return min(under, key=lambda r: (1 - r["val_top1"], r[cost_key])) if under else None


def best_under(run: Run, budget: float, compute_s: float) -> float | None:
    """The test error of the model picked on validation error under `budget`, from the
    gallery at `compute_s`."""
    row = picked(run.gallery(run.rows_at(compute_s)), run.cost_key, budget)
    return None if row is None else 1 - row["test_top1"]


def front_at(run: Run, compute_s: float) -> tuple[list[float], list[float]]:
    """(costs, test errors in %) of the gallery at `compute_s` as a user picks from it:
    the validation front (each model cheaper, or better on validation, than the last),
    each drawn at its test error."""
    gallery = run.gallery(run.rows_at(compute_s))
    front = hull.pareto_front([r[run.cost_key] for r in gallery],
                              [1 - r["val_top1"] for r in gallery])
    return ([gallery[i][run.cost_key] for i in front],
            [100 * (1 - gallery[i]["test_top1"]) for i in front])


# ----------------------------------------------------------------------- outputs

@dataclass
class Summary:
    """One group's figures for the tables; all but compute_h at equal compute."""
    label: str
    seeds: list[int]
    hv_equal: list[float]      # per run
    best: list[list[float | None]]   # per budget, per run: test error of the pick
    compute_h: list[float]     # per run, the whole run
    duplicates: list[int]
    saved_s: list[float]       # per run, device seconds the skipped post-training saved


def summarize(groups: Sequence[Group], equal_compute_s: float, budgets: Sequence[float]
              ) -> list[Summary]:
    out = []
    for g in groups:
        runs = sorted(g.runs, key=lambda r: r.seed)
        at = [r.rows_at(equal_compute_s) for r in runs]
        out.append(Summary(
            g.label, [r.seed for r in runs], [r.hv_at(equal_compute_s) for r in runs],
            [[best_under(r, b, equal_compute_s) for r in runs] for b in budgets],
            [r.compute_s / 3600 for r in runs],
            [sum(row.get("status") == "duplicate" for row in rows) for rows in at],
            [saved_by_duplicates(rows) for rows in at]))
    return out


def saved_by_duplicates(rows: Sequence[dict], kinds: Kinds = KINDS) -> float:
    """Device seconds the duplicates among `rows` did not spend: each paid its search
    phase only, where a trained child of its kind costs the median of the ok ones. The
    first kind of `kinds` that counts savings and has such duplicates is measured."""
    dups = [r for r in rows if r.get("status") == "duplicate"]
    if not dups:
        return 0.0
    for stage in (kind.name for kind in kinds if kind.counts_savings):
        full = [r["compute_s"] for r in rows if r.get("status") == "ok"
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


def paired_values(s: Summary, base: Summary) -> tuple[list[int], list[float], list[float]]:
    """(seeds, s's values, base's values) of the seeds both groups ran, matched by seed,
    never by position: groups may hold other seeds, in another order."""
    common = sorted(set(s.seeds) & set(base.seeds))
    return (common, [s.hv_equal[s.seeds.index(k)] for k in common],
            [base.hv_equal[base.seeds.index(k)] for k in common])


def _intervals(summaries: Sequence[Summary]) -> list[str]:
    """For each group after the first: the paired bootstrap interval against the first.
    One pair resamples to itself, a zero-width interval that would read as certainty, so
    it takes MIN_PAIRS. Seeds without a partner are named."""
    base = summaries[0]
    texts = ["(reference)"]
    for s in summaries[1:]:
        common, a, b = paired_values(s, base)
        unpaired = sorted(set(s.seeds) ^ set(base.seeds))
        note = f"; unpaired seeds left out: {', '.join(map(str, unpaired))}" if unpaired else ""
        if len(common) < MIN_PAIRS:
            texts.append((f"{np.mean(a) - np.mean(b):+.4f}, no interval ({len(common)} pair; "
                          f"needs ≥ {MIN_PAIRS} paired seeds)" if common else "no common seeds")
                         + note)
            continue
        mean, lo, hi = paired_bootstrap(a, b)
        texts.append(f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}] ({len(common)} pairs{note})")
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
    header = (["group", "runs", "HV at equal compute"]
              + [f"test error (%) of the pick ≤ {si(b)} {unit}" for b in budgets]
              + ["duplicates", "compute saved (s)", "compute, whole run (h)",
                 f"ΔHV vs {summaries[0].label} [95 % CI]"])
    body = []
    for s, interval in zip(summaries, _intervals(summaries)):
        body.append([s.label, str(len(s.seeds)), _mean_std(s.hv_equal)]
                    + [_mean_std(per_budget, 100, 2) for per_budget in s.best]
                    + [_mean_std(s.duplicates, digits=1), _mean_std(s.saved_s, digits=1),
                       _mean_std(s.compute_h, digits=3), interval])
    caption = (f"Read at equal compute: after {equal_compute_s / 3600:.3f} device hours, the "
               f"least any run used (compute is device-seconds times the job's share of "
               f"its device, failed trials included), except the whole run's compute. "
               f"Models are picked on validation error and reported at their test error: "
               f"HV is the hypervolume, in the plane (log10 {unit}, error), of the "
               f"gallery's pick at every cost; a budget column gives the test error of the "
               f"model with the least validation error under that budget. Mean ± std over "
               f"run seeds; the interval is a paired bootstrap over the seeds both groups "
               f"ran.")
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
    """Per group: (compute grid in hours, mean, min, max) of the hypervolume over its
    runs, every run read at the same compute, on a grid up to the least compute its
    runs reached."""
    curves = []
    for g in groups:
        top = min(r.compute_s for r in g.runs)
        grid = np.linspace(0, top, points)
        values = np.array([_curve(r, grid) for r in g.runs])
        curves.append((g.label, grid / 3600, values.mean(0), values.min(0), values.max(0)))
    return curves


def _curve(run: Run, grid: Sequence[float]) -> list[float]:
    """run.hv_at at every grid point, computed once per number of results reached."""
    cache: dict[int, float] = {}
    out = []
    for c in grid:
        n = len(run.rows_at(c))
        if n not in cache:
            cache[n] = run.hv_at(c)
        out.append(cache[n])
    return out


# The part of the compute axis where the hypervolume axis is fitted to the mean curves:
# past their first rise from 0 (the first results), which on a 0-based axis left every
# later difference a flat line at the top.
HV_FIT_FROM = 0.1


def hypervolume_figure(groups: Sequence[Group]):
    """Each group's mean hypervolume against compute, from the compute where all its
    runs have a gallery, with a band from the lowest to the highest run. The axis fits
    the mean curves past HV_FIT_FROM of the compute axis (the bands may run off it)."""
    fig, (ax,) = figures.new_figure()
    curves = hypervolume_curves(groups)
    for color, (label, hours, mean, lo, hi) in zip(COLORS, curves):
        start = int(np.argmax(lo > 0)) if (lo > 0).any() else len(hours)
        ax.plot(hours[start:], mean[start:], color=color, linewidth=1.0, label=label)
        ax.fill_between(hours[start:], lo[start:], hi[start:], color=color, alpha=0.2,
                        linewidth=0)
    ax.set_ylim(*hv_limits(curves))
    ax.set_xlabel("Cumulative compute (device hours)", fontsize=figures.FONT)
    ax.set_ylabel("Hypervolume of the gallery\n(picked on val., test error)",
                  fontsize=figures.FONT)
    figures.legend(ax)
    fig.tight_layout()
    return fig


def hv_limits(curves, margin: float = 0.05) -> tuple[float, float]:
    """The hypervolume axis: the range of the mean curves where they are drawn (every
    run of the group has a gallery) past HV_FIT_FROM of the compute axis, `margin` of
    it added on each side."""
    right = max(float(hours[-1]) for _, hours, *_ in curves)
    shown = np.concatenate([mean[(lo > 0) & (hours >= HV_FIT_FROM * right)]
                            for _, hours, mean, lo, _ in curves])
    if not shown.size:
        shown = np.concatenate([mean for _, _, mean, _, _ in curves])
    lo, hi = float(shown.min()), float(shown.max())
    pad = margin * (hi - lo) if hi > lo else max(abs(hi), 1.0) * margin
    return lo - pad, hi + pad


def frontiers_figure(groups: Sequence[Group], compute_s: float):
    fig, (ax,) = figures.new_figure()
    axis = groups[0].runs[0].cost_key
    costs = [r[axis] for g in groups for run in g.runs
             for r in run.gallery(run.rows_at(compute_s))]
    figures.cost_axis(ax, costs or [1.0], axis)
    for color, g in zip(COLORS, groups):
        for k, run in enumerate(g.runs):
            xs, ys = front_at(run, compute_s)
            ax.step(xs, ys, where="post", color=color, linewidth=0.8, alpha=0.8,
                    marker="o", markersize=2, label=g.label if k == 0 else None)
    ax.set_ylabel(f"Test error (%), picked on val.,\nat {compute_s / 3600:.3f} device hours",
                  fontsize=figures.FONT)
    figures.legend(ax)
    fig.tight_layout()
    return fig


def compare(run_dirs: Sequence[str | Path], out_dir: str | Path) -> list[Summary]:
    """Write the comparison of `run_dirs` into `out_dir`; returns the groups' figures."""
    if not run_dirs:
        raise InputError("compare needs at least one run directory")
    runs = [load_run(Path(p)) for p in run_dirs]
    groups = group_runs(runs)
    equal = min(r.compute_s for r in runs)
    budgets = mac_budgets(runs, equal)
    summaries = summarize(groups, equal, budgets)
    out = Path(out_dir)
    unit = {"macs": "MACs", "params": "params", "latency_ms": "ms"}[runs[0].cost_key]
    markdown, latex = tables(summaries, budgets, equal, unit)
    write_text_atomic(out / "compare.md", markdown)
    write_text_atomic(out / "compare.tex", latex)
    figures.save(hypervolume_figure(groups), out / "hypervolume")
    figures.save(frontiers_figure(groups, equal), out / "frontiers")
    return summaries
