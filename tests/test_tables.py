"""Tests for petrinas.tables: frontier tables in Markdown and LaTeX (booktabs)."""

from __future__ import annotations

from pathlib import Path

from petrinas.tables import frontier_tables, latex_escape, write_frontier_tables


def _row(trial_id: str, macs, params, test, *, cells=3, nodes=2, val=0.9) -> dict:
    return dict(trial_id=trial_id, cells=cells, nodes=nodes, macs=macs, params=params,
                val_top1=val, test_top1=test, status="ok")


# Hand-checked: MACs / 1e6 to 2 decimals, params / 1e6 to 3, 100 * (1 - acc) to 2.
ROWS = [
    _row("t0010", 1_234_567, 45_678, 0.9777158774373259),     # 1.23, 0.046, 2.23
    _row("t0002", 94_880, 4_162, 0.9, cells=1, nodes=1),       # 0.09, 0.004, 10.00
    _row("eval_t0005", 5_006_000, 1_999_600, None, nodes=4),   # 5.01, 2.000, missing
]


def _body(markdown: str) -> list[list[str]]:
    lines = markdown.strip().splitlines()[2:]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def test_markdown_values_order_and_missing_metric():
    markdown, _ = frontier_tables(ROWS)
    lines = markdown.strip().splitlines()
    assert lines[0] == ("| name | cells | nodes | MACs (M) | params (M) "
                        "| test error (%) |")
    assert lines[1] == "|:---|---:|---:|---:|---:|---:|"
    assert _body(markdown) == [
        ["t0002", "1", "1", "0.09", "0.004", "10.00"],
        ["t0010", "3", "2", "1.23", "0.046", "2.23"],
        ["eval_t0005", "3", "4", "5.01", "2.000", "–"],
    ]


def test_metric_choice_changes_column():
    markdown, latex = frontier_tables(ROWS, metric="val_top1")
    assert "val. error (%)" in markdown.splitlines()[0]
    assert all(r[-1] == "10.00" for r in _body(markdown))
    assert r"val. error (\%)" in latex


def test_latex_booktabs_escaping_caption_label():
    _, latex = frontier_tables(ROWS)
    lines = latex.strip().splitlines()
    assert lines[0] == r"\begin{table}[t]" and lines[-1] == r"\end{table}"
    assert r"\caption{" in latex and r"\label{tab:frontier}" in latex
    assert r"\begin{tabular}{lrrrrr}" in latex
    top, mid, bottom = (lines.index(r) for r in (r"\toprule", r"\midrule", r"\bottomrule"))
    assert top < mid < bottom
    assert lines[top + 1] == (r"name & cells & nodes & MACs (M) & params (M) "
                              r"& test error (\%) \\")
    body = lines[mid + 1:bottom]
    assert body[0] == r"t0002 & 1 & 1 & 0.09 & 0.004 & 10.00 \\"
    assert body[1] == r"t0010 & 3 & 2 & 1.23 & 0.046 & 2.23 \\"
    assert body[2] == r"eval\_t0005 & 3 & 4 & 5.01 & 2.000 & -- \\"
    assert "eval_t0005" not in latex  # no bare underscore anywhere


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
    assert body[0][3:] == ["2.00", "0.001", "25.00"]
    assert body[2][3:5] == ["–", "–"]


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
