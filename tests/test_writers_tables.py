"""The table writers, file by file, byte for byte: pool.tsv, frontier.tsv /
frontier_eps.tsv, hypervolume.tsv and the eval stage's frontier.md / .tex. Expected lines
are spelled out here, not formatted by the code under test."""

from __future__ import annotations

from pathlib import Path

from petrinas.report.hypervolume_log import HypervolumeLog
from petrinas.report.state import ReportState
from petrinas.report.writers import FrontierDocuments, FrontierTables, HypervolumeTable, \
    PoolTable
from petrinas.search.rows import COLUMNS
from petrinas.tables import frontier_tables
from test_report import BAND, HULL, _example_rows, _row

HEADER = "\t".join(COLUMNS)


def _line(row: dict) -> str:
    """A row of test_report's `_row` as pool.tsv holds it (its 21 columns, in order)."""
    if row["status"] == "failed":
        return (f"{row['trial_id']}\t{row['parent_id']}\t{row['stage']}\tfailed"
                + "\t" * 12 + f"{row['compute_s']:g}" + "\t" * 4
                + f"{row['elapsed_s']:g}\t{row['error']}")
    test = "" if row["test_top1"] is None else f"{row['test_top1']:g}"
    return (f"{row['trial_id']}\t{row['parent_id']}\t{row['stage']}\tok\t3\t1\t2\t"
            f"{row['macs']}\t{row['macs'] // 10}\t\t{row['val_top1']:g}\t{test}\t0.99\t2\t\t"
            f"1.5\tcpu\t\t\t3\t")


def _table(rows: list[dict]) -> str:
    return "\n".join([HEADER, *map(_line, rows)]) + "\n"


def _state(rows: list[dict], hv: bool = False) -> ReportState:
    state = ReportState(0.1, hypervolume=HypervolumeLog((1e9, 0.8)) if hv else None)
    for row in rows:
        state.ingest(row)
    return state


def _by_id() -> dict[str, dict]:
    return {r["trial_id"]: r for r in _example_rows()}


def test_the_expected_line_is_pool_tsvs_format():
    """The hand-written `_line` pins the format: a seed row and a failed row in full."""
    rows = _by_id()
    assert _line(rows["t0000"]) == ("t0000\t\tseed\tok\t3\t1\t2\t100000000\t10000000\t\t0.7\t"
                                    "0.69\t0.99\t2\t\t1.5\tcpu\t\t\t3\t")
    assert _line(rows["t0006"]) == ("t0006\tt0000\tsearch\tfailed\t\t\t\t\t\t\t\t\t\t\t\t"
                                    "0.5\t\t\t\t4\tCUDA OOM")
    assert len(_line(rows["t0006"]).split("\t")) == len(COLUMNS)


def test_pool_table_is_sorted_in_full_and_appended_per_result(tmp_path: Path):
    rows = _by_id()
    state = _state([rows[t] for t in ("t0003", "t0000", "t0006")])   # D A F
    table = PoolTable(tmp_path)
    table.on_start(state)
    assert (tmp_path / "pool.tsv").read_text() == _table(
        [rows["t0000"], rows["t0003"], rows["t0006"]])
    for trial_id in ("t0002", "t0001"):                               # C B arrive
        state.ingest(rows[trial_id])
        table.on_result(rows[trial_id], state)
    assert (tmp_path / "pool.tsv").read_text() == _table(
        [rows[t] for t in ("t0000", "t0003", "t0006", "t0002", "t0001")])
    table.on_finish(state)
    assert (tmp_path / "pool.tsv").read_text() == _table(
        [rows[t] for t in ("t0000", "t0001", "t0002", "t0003", "t0006")])


def test_frontier_tables_hold_the_hull_and_band_and_follow_only_their_changes(tmp_path):
    rows = _by_id()
    state = _state(_example_rows())
    tables = FrontierTables(tmp_path)
    tables.on_start(state)
    assert (tmp_path / "frontier.tsv").read_text() == _table([rows[t] for t in HULL])
    assert (tmp_path / "frontier_eps.tsv").read_text() == _table([rows[t] for t in BAND])
    # A costly, poor model moves neither: the files are not written again.
    for path in (tmp_path / "frontier.tsv", tmp_path / "frontier_eps.tsv"):
        path.unlink()
    poor = _row("t0007", 900_000_000, 0.50, test=0.5)
    state.ingest(poor)
    tables.on_result(poor, state)
    assert not list(tmp_path.iterdir())
    # A cheaper model opens the hull (slope to A -2e-9 < -1e-9 from A to B): both
    # files again, it first.
    cheap = _row("t0008", 50_000_000, 0.60, test=0.61)
    state.ingest(cheap)
    tables.on_result(cheap, state)
    assert (tmp_path / "frontier.tsv").read_text() == _table(
        [cheap, *(rows[t] for t in HULL)])
    assert (tmp_path / "frontier_eps.tsv").read_text().startswith(
        _table([cheap]))
    (tmp_path / "frontier.tsv").unlink()
    tables.on_finish(state)                      # the end: in full, changed or not
    assert (tmp_path / "frontier.tsv").read_text() == _table(
        [cheap, *(rows[t] for t in HULL)])


def test_a_trial_recorded_again_gets_its_new_line(tmp_path: Path):
    """Lines are cached per row: a new row under the same id must not show the old one."""
    rows = _by_id()
    state = _state([rows["t0000"]])
    tables = FrontierTables(tmp_path)
    tables.on_start(state)
    again = dict(rows["t0000"], test_top1=0.5)
    state.ingest(again)
    tables.on_finish(state)
    assert (tmp_path / "frontier.tsv").read_text() == _table([again])


def test_hypervolume_table_has_one_line_per_result_in_arrival_order(tmp_path: Path):
    """Box (1e9 MACs, error 0.8), no floor. A alone: 1 decade x (0.8 - 0.3) = 0.5, on
    test 1 x (0.8 - 0.31) = 0.49; with B (2e8, 0.2): + (9 - log10 2e8) x 0.1 = 0.569897,
    on test + 0.69897 x 0.09 = 0.552907; a failed trial counts its compute only."""
    rows = _by_id()
    state = _state([rows["t0000"]], hv=True)
    table = HypervolumeTable(tmp_path)
    table.on_start(state)
    for trial_id in ("t0001", "t0006"):
        state.ingest(rows[trial_id])
        table.on_result(rows[trial_id], state)
    table.on_finish(state)
    assert (tmp_path / "hypervolume.tsv").read_text() == (
        "trials\tcompute_s\thv_val\thv_test\n"
        "1\t1.5\t0.5\t0.49\n"
        "2\t3\t0.569897\t0.552907\n"
        "3\t3.5\t0.569897\t0.552907\n")
    table.on_start(state)                        # a resumed run: rewritten whole
    assert len((tmp_path / "hypervolume.tsv").read_text().splitlines()) == 4


def test_frontier_documents_are_the_hulls_tables(tmp_path: Path):
    rows = _by_id()
    state = _state(_example_rows())
    FrontierDocuments(tmp_path, "params").on_start(state)
    markdown, latex = frontier_tables([rows[t] for t in HULL], cost_key="params")
    assert (tmp_path / "frontier.md").read_text() == markdown
    assert (tmp_path / "frontier.tex").read_text() == latex
    assert [line.split(" | ")[1] for line in markdown.splitlines()[2:]] == HULL
