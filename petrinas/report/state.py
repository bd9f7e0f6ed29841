"""What every writer reads: a stage's rows so far and what follows from them, kept up to
date incrementally as rows arrive, so work per result stays flat as the run grows."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from petrinas.report.hypervolume_log import HypervolumeLog
from petrinas.report.tsv import natural_key
from petrinas.search.pool import Pool, entry_from_row
from petrinas.search.rows import DUPLICATE, FAILED, pooled


@dataclass(frozen=True)
class Snapshot:
    """What figures are drawn from: the rows, hull and band at one moment."""
    rows: list[dict]
    hull_ids: list[str]
    band_ids: list[str]
    hv_rows: list[dict]


class ReportState:
    """The rows by trial id (in the order they were recorded), the counts by status, the
    pool's hull and ε-band on `cost_key`, and, where the stage keeps one, the
    hypervolume log. `frontier_changed` says whether the last row moved the hull or band.
    """

    def __init__(self, eps: float, cost_key: str = "macs",
                 hypervolume: HypervolumeLog | None = None):
        self.eps = eps
        self.cost_key = cost_key
        self.hypervolume = hypervolume
        self.reset()

    def reset(self) -> None:
        self.rows: dict[str, dict] = {}
        self._count: Counter = Counter()        # rows by status
        self._pool = Pool()
        self.hull: list[str] = []
        self.band: list[str] = []
        self.frontier_changed = False
        if self.hypervolume is not None:
            self.hypervolume.reset()

    def ingest(self, row: dict) -> None:
        before = (self.hull, self.band)
        old = self.rows.get(row["trial_id"])
        if old is not None:
            self._count[old.get("status")] -= 1
        self._count[row.get("status")] += 1
        self.rows[row["trial_id"]] = row
        if pooled(row) and row["trial_id"] not in self._pool:
            self._pool.add(entry_from_row(row, self.cost_key))
            self.hull, self.band = self._pool.frontier(), self._pool.band(self.eps)
        if self.hypervolume is not None:
            self.hypervolume.record(row, self.band_rows(), self.cost_key)
        self.frontier_changed = (self.hull, self.band) != before

    # ------------------------------------------------------------------- reading
    @property
    def pool_size(self) -> int:
        return len(self._pool)

    @property
    def hv_rows(self) -> list[dict]:
        """The hypervolume log's rows; none where the stage keeps no hypervolume."""
        return self.hypervolume.rows if self.hypervolume is not None else []

    def hull_rows(self) -> list[dict]:
        return [self.rows[t] for t in self.hull]

    def band_rows(self) -> list[dict]:
        return [self.rows[t] for t in self.band]

    def sorted_rows(self) -> list[dict]:
        return sorted(self.rows.values(), key=lambda r: natural_key(str(r["trial_id"])))

    def summary(self) -> dict:
        """Counts for the status line (kept as rows arrive: O(1) here)."""
        best = self._pool[self.hull[-1]].error if self.hull else None
        return {"pool": len(self._pool), "failed": self._count[FAILED],
                "duplicates": self._count[DUPLICATE], "frontier": len(self.hull),
                "band": len(self.band), "best_error": best,
                "hypervolume": self.hv_rows[-1]["hv_val"] if self.hv_rows else None}

    def snapshot(self) -> Snapshot:
        return Snapshot(rows=[r for r in self.rows.values() if pooled(r)],
                        hull_ids=list(self.hull), band_ids=list(self.band),
                        hv_rows=list(self.hv_rows))
