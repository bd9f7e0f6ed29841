"""The hypervolume of a running search, one row per result (what hypervolume.tsv, the
TensorBoard run curves and the hypervolume figure show), and the gallery's hypervolume
as compare reads it."""

from __future__ import annotations

from typing import Sequence

from petrinas.search.hypervolume import hypervolume, selected_hypervolume
from petrinas.search.rows import pooled

HV_COLUMNS = ("trials", "compute_s", "hv_val", "hv_test")


class HypervolumeLog:
    """One row per result, on the stage's cost axis: hv_val from the pool's Pareto front
    of validation error; hv_test from the gallery, each model picked on validation error
    and counted with its test error (so a gallery with more members gets no more draws
    at the test set). `ref`: (ref_cost, ref_error[, cost_floor]), the box."""

    def __init__(self, ref: tuple[float, ...]):
        self.ref = ref
        self.reset()

    def reset(self) -> None:
        self.rows: list[dict] = []
        self._front: list[tuple[float, float]] = []   # (cost, val error), Pareto
        self._trials = 0
        self._compute = 0.0

    def record(self, row: dict, gallery: Sequence[dict], cost_key: str) -> None:
        """Account for `row`, the newest result; `gallery` is the band's rows now."""
        self._trials += 1
        self._compute += float(row.get("compute_s") or 0.0)
        if pooled(row):
            self._front = _pareto(self._front + [(float(row[cost_key]),
                                                  1.0 - float(row["val_top1"]))])
        self.rows.append({"trials": self._trials, "compute_s": round(self._compute, 3),
                          "hv_val": self._volume(self._front),
                          "hv_test": round(gallery_hypervolume(gallery, cost_key, self.ref),
                                           6)})

    def _volume(self, points: list[tuple[float, float]]) -> float:
        if not points:
            return 0.0
        costs, errors = zip(*points)
        return round(hypervolume(costs, errors, *self.ref), 6)


def gallery_hypervolume(gallery: Sequence[dict], cost_key: str, ref: Sequence[float]
                        ) -> float:
    """hv_test of `gallery` (rows): picked on validation error, scored on test error,
    in the box `ref` (ref_cost, ref_error[, cost_floor]). compare reads it the same way."""
    rows = [r for r in gallery if r.get("test_top1") is not None
            and r.get("val_top1") is not None]
    return selected_hypervolume([float(r[cost_key]) for r in rows],
                                [1.0 - float(r["val_top1"]) for r in rows],
                                [1.0 - float(r["test_top1"]) for r in rows], *ref)


def _pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-dominated (cost, error) points, cheapest first."""
    front: list[tuple[float, float]] = []
    for cost, error in sorted(points):
        if not front or error < front[-1][1]:
            front.append((cost, error))
    return front
