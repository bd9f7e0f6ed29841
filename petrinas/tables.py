"""Frontier tables for a paper: Markdown (for a README or a report) and LaTeX (booktabs).

`frontier_tables(rows)` takes trial rows (the dicts of pool.tsv / metrics.json: trial_id,
cells, nodes, macs, params and an accuracy such as test_top1) and returns both tables,
sorted by MACs. Accuracies become top-1 errors in percent. A missing value is shown as an
en dash ("--" in LaTeX, which typesets as one without needing a UTF-8 input encoding).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Sequence

from petrinas.fileio import write_text_atomic

MISSING = "–"            # en dash, for Markdown
LATEX_MISSING = "--"     # the same dash in LaTeX
ERROR_LABELS = {"test_top1": "test error (%)", "val_top1": "val. error (%)",
                "train_top1": "train error (%)"}
DEFAULT_CAPTION = "Models on the search frontier, sorted by multiply-accumulates (MACs)."
DEFAULT_LABEL = "tab:frontier"

# LaTeX specials and their escapes; a backslash is replaced first by the single regex.
_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$",
                  "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_RE = re.compile("|".join(re.escape(c) for c in _LATEX_ESCAPES))


def frontier_tables(rows: Sequence[dict], metric: str = "test_top1", *,
                    caption: str = DEFAULT_CAPTION, label: str = DEFAULT_LABEL
                    ) -> tuple[str, str]:
    """(markdown, latex) tables of `rows` sorted by MACs, with columns name, cells,
    nodes, MACs (M), params (M) and the top-1 error in percent from `metric`."""
    header = ["name", "cells", "nodes", "MACs (M)", "params (M)", error_label(metric)]
    cells = [_row_cells(r, metric) for r in sorted(rows, key=_by_macs)]
    return _markdown(header, cells), _latex(header, cells, caption, label)


def write_frontier_tables(out_dir: Path, rows: Sequence[dict], metric: str = "test_top1"
                          ) -> tuple[Path, Path]:
    """Write `frontier.md` and `frontier.tex` into `out_dir`, each atomically."""
    markdown, latex = frontier_tables(rows, metric)
    paths = Path(out_dir) / "frontier.md", Path(out_dir) / "frontier.tex"
    write_text_atomic(paths[0], markdown)
    write_text_atomic(paths[1], latex)
    return paths


def error_label(metric: str) -> str:
    return ERROR_LABELS.get(metric, f"{metric} error (%)")


def latex_escape(text: str) -> str:
    return _LATEX_RE.sub(lambda m: _LATEX_ESCAPES[m.group()], text)


# ------------------------------------------------------------------------- cells

def _by_macs(row: dict) -> tuple:
    """MACs ascending, rows without MACs last, then natural trial order (t9 < t10)."""
    macs = _number(row.get("macs"))
    name = str(row.get("trial_id", ""))
    natural = tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name))
    return (macs is None, macs or 0.0, natural)


def _row_cells(row: dict, metric: str) -> list[str | None]:
    """The table cells of one row; None marks a missing value."""
    accuracy = _number(row.get(metric))
    return [
        str(row.get("trial_id", "")),
        _fmt(row.get("cells"), lambda v: f"{int(v)}"),
        _fmt(row.get("nodes"), lambda v: f"{int(v)}"),
        _fmt(row.get("macs"), lambda v: f"{v / 1e6:.2f}"),
        _fmt(row.get("params"), lambda v: f"{v / 1e6:.3f}"),
        None if accuracy is None else f"{100 * (1 - accuracy):.2f}",
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

    align = "|:---|" + "---:|" * (len(header) - 1)  # names left, numbers right
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
        r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
        r"\toprule",
        line([latex_escape(h) for h in header]),
        r"\midrule",
        *body,
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ]) + "\n"
