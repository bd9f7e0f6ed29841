"""Shared test settings: a tiny digits search that still trains and grows real models.

Importable from every test folder: pytest puts tests/ on sys.path for its conftest.py.
"""

import csv
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TINY = ["search.seeds.cells=[1, 2]", "search.seeds.reductions=[0, 0]",
        "search.seeds.nodes=[1, 1]", "search.seed_train.epochs=2",
        "search.search_train.epochs=1", "search.post_train.epochs=1",
        "model.candidate_ops=[sep_conv_3x3, max_pool_3x3, skip_connect, none]",
        "model.init_channels=4", "search.plot_interval_s=0"]
NUMERIC = ("cells", "reductions", "nodes", "macs", "params", "val_top1", "test_top1",
           "train_top1", "epochs", "examples", "compute_s", "elapsed_s")


def read_tsv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def numeric(row: dict) -> dict:
    """A pool.tsv row with its numbers parsed (empty cells become None)."""
    out = dict(row)
    for key in NUMERIC:
        if key in out:
            out[key] = float(out[key]) if out[key] not in ("", None) else None
    return out
