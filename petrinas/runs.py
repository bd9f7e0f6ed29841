"""Reading a finished run's models by what they are, not by id: trial ids differ from
machine to machine (a run is reproducible on one machine and library versions only), so
examples and scripts ask for "the best gallery model" instead of naming `t0028`."""

from __future__ import annotations

import csv
from pathlib import Path

from petrinas.errors import InputError
from petrinas.search.kinds import KINDS


def best_model(run_dir: str | Path, max_cost: float | None = None, *,
               cost: str = "macs") -> Path:
    """The folder of the run's best model: the lowest validation error in
    `frontier_eps.tsv` (the gallery), among those costing at most `max_cost` (in the
    `cost` column: macs, params or latency_ms) if given; ties go to the cheaper. For an
    eval directory (`<run>/eval`), its trial folder `trials/<eval id>` (each eval model
    is stored there once; older runs also hold a copy under the gallery model's name).
    Load it with `petrinas.load_model`."""
    run_dir = Path(run_dir)
    table = run_dir / "frontier_eps.tsv"
    if not table.is_file():
        raise InputError(f"{table}: missing (is {run_dir} a finished search?)")
    with open(table) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    fits = [r for r in rows if max_cost is None or float(r[cost]) <= max_cost]
    if not fits:
        cheapest = min((float(r[cost]) for r in rows), default=float("nan"))
        raise InputError(f"no gallery model of {run_dir} costs at most {max_cost:g} {cost} "
                         f"(the cheapest: {cheapest:g})")
    best = max(fits, key=lambda r: (float(r["val_top1"]), -float(r[cost])))
    # A model trained again from its parent (the eval stage's) is stored once, in its
    # stage's trials/: that stage keeps no gallery/ copies.
    if best.get("stage") in KINDS.names(lambda kind: kind.retrains_parent):
        return run_dir / "trials" / best["trial_id"]
    return run_dir / "gallery" / best["trial_id"]


def model_folder(path: str | Path) -> Path:
    """`path` itself, or, for a run directory (a search's or its eval stage's), the
    folder of its best gallery model: what the export and draw commands accept."""
    path = Path(path)
    if (path / "frontier_eps.tsv").is_file() and not (path / "desc.yaml").exists():
        return best_model(path)
    return path
