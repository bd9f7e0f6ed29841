"""Frontier tables for a paper: Markdown (for a README or a report) and LaTeX (booktabs).

`frontier_tables(rows)` takes trial rows (the dicts of pool.tsv / metrics.json) and
returns both tables, sorted by MACs: the model's name (the model a row of a kind that
retrains its parent stands for, as the eval stage's do, else the trial), the trial id, cells, nodes, MACs and parameters to three
significant digits with a unit (94.9K, 1.23M), and the validation and test top-1 errors
in percent. A missing value is shown as an en dash ("--" in LaTeX, which typesets as one
without needing a UTF-8 input encoding).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Sequence

from petrinas.fileio import write_text_atomic
from petrinas.search.kinds import KINDS, Kinds

MISSING = "–"            # en dash, for Markdown
LATEX_MISSING = "--"     # the same dash in LaTeX
ERROR_LABELS = {"test_top1": "test error (%)", "val_top1": "val. error (%)",
                "train_top1": "train error (%)"}
DEFAULT_CAPTION = ("Eval-stage models on the frontier of validation error against "
                   "multiply-accumulates (MACs), sorted by MACs, with their validation "
                   "and test top-1 errors.")
DEFAULT_LABEL = "tab:frontier"
METRICS = ("val_top1", "test_top1")

# LaTeX specials and their escapes; a backslash is replaced first by the single regex.
_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$",
                  "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_RE = re.compile("|".join(re.escape(c) for c in _LATEX_ESCAPES))


def frontier_tables(rows: Sequence[dict], metrics: Sequence[str] = METRICS, *,
                    caption: str = DEFAULT_CAPTION, label: str = DEFAULT_LABEL,
                    cost_key: str = "macs", kinds: Kinds = KINDS) -> tuple[str, str]:
    """(markdown, latex) tables of `rows` sorted by `cost_key` (the search's cost axis):
    model, trial, cells, nodes, MACs, params, latency and the top-1 error in percent of
    each of `metrics`. `kinds` says which rows stand for their parent model."""
    by_parent = kinds.names(lambda kind: kind.retrains_parent)
    header = ["model", "trial", "cells", "nodes", "MACs", "params", "latency (ms)",
              *(error_label(m) for m in metrics)]
    cells = [_row_cells(r, metrics, by_parent)
             for r in sorted(rows, key=lambda r: _by_cost(r, cost_key))]
    return _markdown(header, cells), _latex(header, cells, caption, label)


def write_frontier_tables(out_dir: Path, rows: Sequence[dict],
                          metrics: Sequence[str] = METRICS, cost_key: str = "macs"
                          ) -> tuple[Path, Path]:
    """Write `frontier.md` and `frontier.tex` into `out_dir`, each atomically."""
    markdown, latex = frontier_tables(rows, metrics, cost_key=cost_key)
    paths = Path(out_dir) / "frontier.md", Path(out_dir) / "frontier.tex"
    write_text_atomic(paths[0], markdown)
    write_text_atomic(paths[1], latex)
    return paths


def si(value: float) -> str:
    """Three significant digits with a unit: 3802 -> 3.80K, 94880 -> 94.9K, 1.2e6 ->
    1.20M; below 1000 the number itself."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale * 0.9995:
            return f"{value / scale:#.3g}".rstrip(".") + unit
    return f"{value:.0f}"


def error_label(metric: str) -> str:
    return ERROR_LABELS.get(metric, f"{metric} error (%)")


def latex_escape(text: str) -> str:
    return _LATEX_RE.sub(lambda m: _LATEX_ESCAPES[m.group()], text)


# ------------------------------------------------------------------------- cells

def _by_cost(row: dict, cost_key: str = "macs") -> tuple:
    """Cost ascending, rows without it last, then natural trial order (t9 < t10)."""
    value = _number(row.get(cost_key))
    name = str(row.get("trial_id", ""))
    natural = tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name))
    return (value is None, value or 0.0, natural)


def _row_cells(row: dict, metrics: Sequence[str], by_parent: Sequence[str]
               ) -> list[str | None]:
    """The table cells of one row; None marks a missing value. A row whose stage is in
    `by_parent` is named by its parent, the model it stands for."""
    name = str(row.get("parent_id") or row.get("trial_id", "")) \
        if row.get("stage") in by_parent else str(row.get("trial_id", ""))
    errors = [_number(row.get(m)) for m in metrics]
    return [
        name,
        str(row.get("trial_id", "")),
        _fmt(row.get("cells"), lambda v: f"{int(v)}"),
        _fmt(row.get("nodes"), lambda v: f"{int(v)}"),
        _fmt(row.get("macs"), si),
        _fmt(row.get("params"), si),
        _fmt(row.get("latency_ms"), lambda v: f"{v:.3g}"),
        *(None if a is None else f"{100 * (1 - a):.2f}" for a in errors),
    ]


def _number(value: Any) -> float | None:
    """A float from a number or a numeric string (TSV rows); None when missing."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _fmt(value: Any, fmt: Callable[[float], str]) -> str | None:
    number = _number(value)
    return None if number is None else fmt(number)


# ----------------------------------------------------------------------- layouts

def _markdown(header: list[str], rows: list[list[str | None]]) -> str:
    def line(cells: list[str]) -> str:
        # A pipe inside a cell would end it early.
        return "| " + " | ".join(c.replace("|", r"\|") for c in cells) + " |"

    align = "|:---|" + "---:|" * (len(header) - 1)  # the name left, the rest right
    body = [line([MISSING if c is None else c for c in r]) for r in rows]
    return "\n".join([line(header), align, *body]) + "\n"


def _latex(header: list[str], rows: list[list[str | None]], caption: str,
           label: str) -> str:
    def line(cells: list[str]) -> str:
        return " & ".join(cells) + r" \\"

    body = [line([LATEX_MISSING if c is None else latex_escape(c) for c in r])
            for r in rows]
    return "\n".join([
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(caption)}}}",
        rf"\label{{{label}}}",
        r"\begin{tabular}{ll" + "r" * (len(header) - 2) + "}",
        r"\toprule",
        line([latex_escape(h) for h in header]),
        r"\midrule",
        *body,
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ]) + "\n"
