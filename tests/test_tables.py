"""Tests for petrinas.tables: frontier tables in Markdown and LaTeX (booktabs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from petrinas.tables import frontier_tables, latex_escape, si, write_frontier_tables


def _row(trial_id: str, macs, params, test, *, cells=3, nodes=2, val=0.9, **extra) -> dict:
    return dict(trial_id=trial_id, cells=cells, nodes=nodes, macs=macs, params=params,
                val_top1=val, test_top1=test, status="ok", **extra)


# Hand-checked: MACs and params to 3 significant digits with a unit, 100 * (1 - acc) to 2.
ROWS = [
    _row("t0010", 1_234_567, 45_678, 0.9777158774373259,       # 1.23M, 45.7K, 10.00, 2.23
         latency_ms=0.81234),                                  # 0.812 ms
    _row("t0002", 94_880, 3_802, 0.9, cells=1, nodes=1, val=0.95,  # 94.9K, 3.80K, 5.00
         latency_ms=1.5),
    _row("e0005", 5_006_000, 1_999_600, None, nodes=4, stage="eval",
         parent_id="t_0033"),                                  # 5.01M, 2.00M, missing
]


def _body(markdown: str) -> list[list[str]]:
    lines = markdown.strip().splitlines()[2:]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_markdown_values_order_and_missing_metric():
    markdown, _ = frontier_tables(ROWS)
    lines = markdown.strip().splitlines()
    assert lines[0] == ("| model | trial | cells | nodes | MACs | params | latency (ms) "
                        "| val. error (%) | test error (%) |")
    assert lines[1] == "|:---|---:|---:|---:|---:|---:|---:|---:|---:|"
    assert _body(markdown) == [
        ["t0002", "t0002", "1", "1", "94.9K", "3.80K", "1.5", "5.00", "10.00"],
        ["t0010", "t0010", "3", "2", "1.23M", "45.7K", "0.812", "10.00", "2.23"],
        # An eval model is named by the gallery model it was built from.
        ["t_0033", "e0005", "3", "4", "5.01M", "2.00M", "–", "10.00", "–"],
    ]


def test_rows_follow_the_cost_axis():
    body = _body(frontier_tables(ROWS, cost_key="latency_ms")[0])
    assert [r[1] for r in body] == ["t0010", "t0002", "e0005"]   # no latency: last


def test_metric_choice_changes_columns():
    markdown, latex = frontier_tables(ROWS, metrics=("test_top1",))
    assert markdown.splitlines()[0].endswith("| latency (ms) | test error (%) |")
    assert r"(ms) & test error (\%) \\" in latex


def test_latex_booktabs_escaping_caption_label():
    _, latex = frontier_tables(ROWS)
    lines = latex.strip().splitlines()
    assert lines[0] == r"\begin{table}[t]" and lines[-1] == r"\end{table}"
    assert r"\caption{Eval-stage models on the frontier of validation error" in latex
    assert r"\label{tab:frontier}" in latex
    assert r"\begin{tabular}{llrrrrrrr}" in latex
    top, mid, bottom = (lines.index(r) for r in (r"\toprule", r"\midrule", r"\bottomrule"))
    assert top < mid < bottom
    assert lines[top + 1] == (r"model & trial & cells & nodes & MACs & params "
                              r"& latency (ms) & val. error (\%) & test error (\%) \\")
    body = lines[mid + 1:bottom]
    assert body[0] == r"t0002 & t0002 & 1 & 1 & 94.9K & 3.80K & 1.5 & 5.00 & 10.00 \\"
    assert body[2] == r"t\_0033 & e0005 & 3 & 4 & 5.01M & 2.00M & -- & 10.00 & -- \\"
    assert "t_0033" not in latex  # no bare underscore anywhere


@pytest.mark.parametrize("value,text", [(3802, "3.80K"), (94_880, "94.9K"),
                                        (270_000, "270K"), (1_234_567, "1.23M"),
                                        (999, "999"), (999.6, "1.00K"), (2e9, "2.00G")])
def test_three_significant_digits_with_a_unit(value, text):
    assert si(value) == text


def test_latex_escape_specials():
    assert latex_escape("a_b&c%d$e#f{g}h~i^j\\k") == (
        r"a\_b\&c\%d\$e\#f\{g\}h\textasciitilde{}i\textasciicircum{}j"
        r"\textbackslash{}k")


def test_missing_macs_sort_last_and_strings_parse():
    rows = [_row("t9", None, None, 0.5), _row("t10", "2000000", "1000", "0.75"),
            _row("t11", 2_000_000, 3000, 0.8)]
    body = _body(frontier_tables(rows)[0])
    # Equal MACs keep natural trial order (t10 before t11); no MACs goes last.
    assert [r[0] for r in body] == ["t10", "t11", "t9"]
    assert body[0][4:] == ["2.00M", "1.00K", "–", "10.00", "25.00"]
    assert body[2][4:6] == ["–", "–"]


def test_pipe_in_name_is_escaped_in_markdown():
    markdown, _ = frontier_tables([_row("a|b", 1e6, 1e3, 0.5)])
    assert r"| a\|b |" in markdown


def test_empty_rows_give_header_only():
    markdown, latex = frontier_tables([])
    assert len(markdown.strip().splitlines()) == 2
    assert r"\midrule" + "\n" + r"\bottomrule" in latex


def test_write_frontier_tables(tmp_path: Path):
    md_path, tex_path = write_frontier_tables(tmp_path / "out", ROWS)
    assert md_path == tmp_path / "out" / "frontier.md"
    assert tex_path == tmp_path / "out" / "frontier.tex"
    markdown, latex = frontier_tables(ROWS)
    assert md_path.read_text() == markdown and tex_path.read_text() == latex
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "frontier.md", "frontier.tex"]  # no temp files left
