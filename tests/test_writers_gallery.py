"""GalleryFolders: gallery/ holds the ε-band's models, in full at the start and the end,
by the members that joined or left in between."""

from __future__ import annotations

from pathlib import Path

from petrinas.report.frontier import frontier_ids
from petrinas.report.state import ReportState
from petrinas.report.writers import GalleryFolders
from test_report import BAND, _example_rows, _fake_trial, _row


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_gallery_is_the_band_in_full_at_start_and_end_and_by_changes_between(tmp_path):
    rows = _example_rows()
    for row in rows:
        if row["status"] == "ok":
            _fake_trial(tmp_path, row["trial_id"])
    gallery = tmp_path / "gallery"
    (gallery / "t9999").mkdir(parents=True)          # stale: a resumed run's leftover
    state = ReportState(0.1)
    for row in rows:
        state.ingest(row)
    writer = GalleryFolders(tmp_path)
    writer.on_start(state)
    assert _names(gallery) == BAND
    assert (gallery / "t0004" / "weights.pt").read_bytes() == b"wt0004"

    # Z (450e6, error .05) takes D and E out of the band (hull A, B, Z) and joins it.
    (gallery / "t9998").mkdir()                      # not a member, not ours to prune now
    z = _row("t0007", 450_000_000, 0.95, test=0.94)
    _fake_trial(tmp_path, "t0007")
    state.ingest(z)
    writer.on_result(z, state)
    band = frontier_ids(rows + [z], 0.1)[1]
    assert band == ["t0000", "t0001", "t0007"]
    assert _names(gallery) == ["t0000", "t0001", "t0007", "t9998"]

    writer.on_finish(state)                          # in full again: pruned
    assert _names(gallery) == band


def test_a_member_whose_files_are_not_complete_is_left_out(tmp_path: Path):
    rows = [r for r in _example_rows() if r["trial_id"] in ("t0000", "t0001")]
    _fake_trial(tmp_path, "t0000")
    _fake_trial(tmp_path, "t0001", metrics=False)    # mid-write
    state = ReportState(0.1)
    for row in rows:
        state.ingest(row)
    GalleryFolders(tmp_path).on_start(state)
    assert _names(tmp_path / "gallery") == ["t0000"]
