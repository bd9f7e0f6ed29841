"""Deduplication and the compute of failed trials, through the real architecture
registry, executor and training jobs on a local Ray instance (TINY digits settings).

The claim key is (parent, architecture) (rows.claim_key): a repeat of a trained model is
skipped, the same architecture grown from another parent is trained, a failed owner's
claim is released, and a run's trained models keep their claims across a restart."""

import zipfile

import numpy as np
import pytest

from petrinas.config_loader import load_config
from petrinas.engine.jobs import RayExecutor
from petrinas.search.kinds import KINDS
from petrinas.search.rows import claim_owners
from petrinas.engine.runner import run_search
from support import TINY, read_tsv

pytestmark = pytest.mark.usefixtures("shared_ray")


def finish(executor, trial_id, kind, payload, parent_id="", weights=None):
    """Submit one trial of the kind named `kind` and wait for its completion."""
    executor.submit(trial_id, KINDS.get(kind), payload, seed=1, parent_id=parent_id,
                    weights_key=parent_id or None,
                    load_weights=(lambda: weights) if weights is not None else None)
    done = []
    while not done:
        done = executor.wait(5.0)
    assert [d.trial_id for d in done] == [trial_id]
    return done[0]


def test_a_repeat_is_a_duplicate_and_another_parent_is_not():
    """Seeds t0 and t1 of one shape: t1 is t0's duplicate (no weights, no training).
    Children of t0's model, with every candidate pair kept (top_k 9 of the 3 states x 3
    ops), all have one architecture: the second child of parent t0 is a duplicate, a
    child of the same weights filed under another parent id is trained."""
    config = load_config("petridish_digits", [*TINY, "model.top_k=9"])
    executor = RayExecutor(config, owners={})
    seed = finish(executor, "t0000", "seed", {"macro": [1, 0, 1]})
    assert seed.error is None and "duplicate_of" not in seed.output.row
    again = finish(executor, "t0001", "seed", {"macro": [1, 0, 1]})
    assert again.output.row["duplicate_of"] == "t0000" and again.output.weights is None
    assert again.output.row["epochs"] == 0

    grow = {"parent": seed.output.desc, "selection": "alpha"}
    children = [finish(executor, tid, "search", grow, parent_id=parent,
                       weights=seed.output.weights)
                for tid, parent in (("t0002", "t0000"), ("t0003", "t0000"),
                                    ("t0004", "t0009"))]
    assert len({c.output.row["arch_hash"] for c in children}) == 1
    assert [c.output.row.get("duplicate_of") for c in children] == [None, "t0002", None]


def corrupt_digits_npz(path):
    """The digits as an .npz whose x array fails its CRC check: the header and y read
    fine (a job builds and claims its model), reading x fails (after the claim)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    np.savez(path, x=digits.images.astype(np.float32), y=digits.target)
    good = path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        member = archive.getinfo("x.npy")
    bad = bytearray(good)
    bad[member.header_offset + 30 + len("x.npy") + 1000] ^= 0xFF
    path.write_bytes(bytes(bad))
    return good


def test_a_failed_owner_does_not_make_later_trials_duplicates(tmp_path):
    """t0 claims its architecture, then fails reading a corrupt data file; the file is
    repaired and t1, the same architecture, trains: not t0's duplicate. t0's row carries
    the compute it spent (CPU seconds of its job)."""
    path = tmp_path / "digits.npz"
    good = corrupt_digits_npz(path)
    config = load_config("petridish_digits", [*TINY, "dataset.name=npz",
                                              f"dataset.root={path}"])
    executor = RayExecutor(config, owners={})
    failed = finish(executor, "t0000", "seed", {"macro": [1, 0, 1]})
    assert "Bad CRC-32" in failed.error
    assert failed.spent["device"] == "cpu" and failed.spent["compute_s"] > 0
    path.write_bytes(good)
    later = finish(executor, "t0001", "seed", {"macro": [1, 0, 1]})
    assert later.error is None and "duplicate_of" not in later.output.row
    assert later.output.row["val_top1"] > 0.1


def test_trained_models_keep_their_claims_across_a_restart(tmp_path):
    """Random search in a space of 2 architectures (1 cell, 1 node of one skip edge from
    one of 2 states; the unused reduction cell does not count): 2 trials, then the same
    command with 8. Trials of
    the second session that draw a first-session architecture are its duplicates (the
    registry restarts from pool.tsv's ok rows); claims are never taken from a failed or
    duplicate row."""
    out = tmp_path / "run"
    common = [*TINY, "search.strategy=random_search", "search.seeds.cells=[1, 1]",
              "model.candidate_ops=[skip_connect, none]", "model.top_k=1",
              "search.max_macs=1", "seed=3"]
    run_search(load_config("petridish_digits", [*common, "search.max_trials=2"]), out)
    first = {r["trial_id"] for r in read_tsv(out / "pool.tsv")}
    assert first == {"t0000", "t0001"}
    run_search(load_config("petridish_digits", [*common, "search.max_trials=8"]), out)
    rows = read_tsv(out / "pool.tsv")
    later = [r for r in rows if r["trial_id"] not in first]
    assert any(r["status"] == "duplicate" and r["duplicate_of"] in first for r in later)
    assert all(r["duplicate_of"] == "" or
               next(o for o in rows if o["trial_id"] == r["duplicate_of"])["status"] == "ok"
               for r in rows)
    assert set(claim_owners(rows).values()) == {r["trial_id"] for r in rows
                                                 if r["status"] == "ok"}
    assert len({r["arch_hash"] for r in rows}) == 2
