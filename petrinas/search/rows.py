"""One trial, one row: the columns of pool.tsv, the journal's results and metrics.json.

A row is a plain dict. The store builds it from what the trial was asked to do (its
spec) and what its job measured; the reporter writes it as a TSV line. Statuses:

    ok         trained; in the pool
    duplicate  its claim key (parent and architecture, `claim_key`) had been trained
               (or was being trained) by `duplicate_of`, so it skipped its
               (post-)training; not in the pool
    failed     its job raised; `error` says why, `compute_s` what it spent (empty when
               its worker died: nothing came back to measure)
    lost       its result was journaled but its files are gone (the run goes on)
"""

from __future__ import annotations

from dataclasses import dataclass, field

COLUMNS: tuple[str, ...] = (
    "trial_id", "parent_id", "stage", "status", "cells", "reductions", "nodes", "macs",
    "params", "latency_ms", "val_top1", "test_top1", "train_top1", "epochs", "examples",
    "compute_s", "device", "arch_hash", "duplicate_of", "elapsed_s", "error")

# What a job measures (the rest comes from the spec and the driver).
MEASURED = ("cells", "reductions", "nodes", "macs", "params", "latency_ms", "val_top1",
            "test_top1", "train_top1", "epochs", "examples", "compute_s", "device", "arch_hash",
            "duplicate_of")

OK, DUPLICATE, FAILED, LOST = "ok", "duplicate", "failed", "lost"


def make_row(trial_id: str, spec, measured: dict, *, status: str, elapsed_s: float,
             error: str = "") -> dict:
    """The row of `trial_id`: its spec's fields, then `measured` (only MEASURED keys),
    then status, error and the run's elapsed driver time when it was recorded."""
    row = {"trial_id": trial_id, "parent_id": spec.parent_id or "", "stage": spec.stage}
    if spec.macro:
        row.update(cells=spec.macro[0], reductions=spec.macro[1], nodes=spec.macro[2])
    row.update({k: v for k, v in measured.items() if k in MEASURED})
    row.update(status=status, error=error, elapsed_s=round(elapsed_s, 1))
    return row


def pooled(row: dict) -> bool:
    """Whether the row's model is in the pool (trained, with a validation accuracy)."""
    return row.get("status") == OK and row.get("val_top1") is not None


@dataclass
class TrialOutput:
    """What a job returns to the driver: plain data (no torch), so results of any job,
    real or stand-in, travel back and are recorded the same way."""
    desc: dict                      # the trained model's description (ModelDesc.to_dict)
    weights: bytes | None           # its state_dict as bytes; None for a duplicate
    row: dict                       # pool.tsv fields measured by the job (MEASURED)
    history: dict = field(default_factory=dict)  # phase -> per-epoch metrics
    notes: dict = field(default_factory=dict)    # free-form: chosen pairs, timing, node


def claim_key(parent_id: str, arch_hash: str) -> str:
    """What deduplication compares: the architecture *and* the parent it grew from.

    Under weight inheritance a child is its parent's weights plus a node, so the same
    architecture grown from another parent is another trained model (it starts from
    other weights and ends at another error): keyed by architecture alone it would be
    dropped. A repeat of the same parent and architecture starts from the same weights
    and trains the same way, so it is skipped. Models trained from scratch (seeds,
    random search) have no parent: their architecture alone is the key."""
    return f"{parent_id or ''}/{arch_hash}"


def claim_owners(rows) -> dict[str, str]:
    """claim key -> trial id of the trained models among `rows` (status ok): what the
    architecture registry starts from when a run starts or resumes. Claims of trials
    that failed, were cancelled or were in flight at a stop are not kept."""
    return {claim_key(row.get("parent_id") or "", row["arch_hash"]): row["trial_id"]
            for row in rows if row.get("status") == OK and row.get("arch_hash")}
