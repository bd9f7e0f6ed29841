"""Deduplication and the compute of failed trials, through the real architecture
registry, executor and training jobs on a local Ray instance (TINY digits settings).

The claim key is (parent, architecture) (rows.claim_key): a repeat of a trained model is
skipped, the same architecture grown from another parent is trained, the claim of an
owner that failed, was cancelled, lost its worker or was found lost is released, and a
run's trained models keep their claims across a restart."""

import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from petrinas.config_loader import load_config
from petrinas.engine.jobs import RayExecutor, _claimer
from petrinas.search.kinds import KINDS, JobKind
from petrinas.search.rows import claim_owners
from petrinas.engine.runner import run_search
from support import TINY, read_tsv


def finish(executor, trial_id, kind, payload, parent_id="", weights=None):
    """Submit one trial of `kind` (a JobKind, or a name in KINDS) and wait for its
    completion."""
    kind = kind if isinstance(kind, JobKind) else KINDS.get(kind)
    executor.submit(trial_id, kind, payload, seed=1, parent_id=parent_id,
                    weights_key=parent_id or None,
                    load_weights=(lambda: weights) if weights is not None else None)
    done = []
    while not done:
        done = executor.wait(5.0)
    assert [d.trial_id for d in done] == [trial_id]
    return done[0]


@pytest.mark.usefixtures("shared_ray")
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


@pytest.mark.usefixtures("shared_ray")
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


@pytest.mark.usefixtures("shared_ray")
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


# Job kinds declared here (the workers import this module: conftest's shared_ray), that
# claim an architecture and train nothing, so an owner's end is the test's to choose.

def claim_then_wait(config, payload, weights, ctx, claim):
    """Claims payload["arch"], says so by creating payload["claimed"], then waits to be
    cancelled (returning after 10 minutes, so a failed cancel cannot hang the suite)."""
    assert claim(payload["arch"]) is None
    Path(payload["claimed"]).touch()
    time.sleep(600)


def claim_then_die(config, payload, weights, ctx, claim):
    """Claims payload["arch"], then its worker process dies (as on a lost node)."""
    assert claim(payload["arch"]) is None
    os._exit(1)


WAITS, DIES = (JobKind(name, job=f"{__name__}:{name}")
               for name in ("claim_then_wait", "claim_then_die"))


@pytest.mark.usefixtures("shared_ray")
def test_an_owner_cancelled_or_lost_releases_its_claim(tmp_path):
    """At once: t0 claims architecture a and is cancelled once it holds the claim (the
    event: a file it creates); t1 claims b and its worker dies. Then t2 claims a and b
    through the registry (the claim function a job gets, called here: no worker to
    start) and owns both.

    Fails if cancel_all or a system failure leaves the owner's claim in the registry."""
    config = load_config("petridish_digits", [*TINY, "resources.max_retries=0"])
    executor = RayExecutor(config, owners={})
    claimed = tmp_path / "claimed"
    executor.submit("t0000", WAITS, {"arch": "a", "claimed": str(claimed)}, seed=1)
    executor.submit("t0001", DIES, {"arch": "b"}, seed=1)
    ended = []
    while not (ended and claimed.exists()):
        ended += executor.wait(0.05)
    assert [(e.trial_id, e.error.split(":")[0]) for e in ended] == [
        ("t0001", "system failure")]
    assert executor.cancel_all() == ["t0000"]
    claim = _claimer(executor._registry, "t0002")
    assert [claim("a"), claim("b"), _claimer(executor._registry, "t0003")("a")] == [
        None, None, "t0002"]


def test_lost_and_failed_models_own_no_claims_at_a_restart():
    """Fails if the registry a resumed run starts from keeps the claim of a model
    marked lost (its files gone), failed or a duplicate."""
    rows = [{"trial_id": f"t000{k}", "parent_id": parent, "arch_hash": arch,
             "status": status}
            for k, (parent, arch, status) in enumerate([
                ("", "a", "ok"), ("", "b", "lost"), ("t0000", "c", "ok"),
                ("", "d", "failed"), ("", "a", "duplicate")])]
    assert claim_owners(rows) == {"/a": "t0000", "t0000/c": "t0002"}


@pytest.mark.usefixtures("shared_ray")
def test_a_model_found_lost_mid_run_releases_its_claim(tmp_path):
    """The loop's own parts (store, petridish, executor, requests, reporter): seed t0 is
    trained (here, in this process) and its weights vanish; growing it, the loop finds
    them gone, fails the child and marks t0 lost. Its architecture is free again.

    Fails if the loop keeps a model's claim when it marks the model lost mid-run."""
    from petrinas.engine.runner import JobRequests, TrialLoop, search_reporter
    from petrinas.engine.store import RunStore
    from petrinas.model_desc.shapes import MeasuredShapeCosts
    from petrinas.report.progress import Progress
    from petrinas.search.stopping import Budget
    from petrinas.search.strategy import strategy_from_config
    from petrinas.train.pipeline import JobContext, run_seed

    config = load_config("petridish_digits", [
        *TINY, "search.seeds.cells=[1, 1]", "search.max_trials=2",  # one seed shape
        "search.seed_train.epochs=1", "dataset.max_train=64", "search.hv_ref_cost=1e6",
        "search.hv_ref_error=0.9", "search.hv_cost_floor=1e3"])  # given: none measured
    store = RunStore.open(tmp_path / "run", config)
    strategy = strategy_from_config(config, MeasuredShapeCosts(config))
    spec = strategy.suggest("t0000")
    store.record_submit("t0000", spec, strategy.rng_state())
    seed = store.record_result("t0000", run_seed(config, spec.macro, JobContext(seed=1)))
    strategy.on_trial_complete("t0000", result=seed)
    (store.dir / "trials" / "t0000" / "weights.pt").unlink()
    executor = RayExecutor(config, owners=claim_owners(store.rows.values()))
    reporter = search_reporter(store.dir, config, Progress(enabled=False))
    reporter.start(store.rows.values())
    TrialLoop(config, store, strategy, executor, reporter, request=JobRequests(store.dir),
              budget=Budget.from_config(config)).run([])
    store.close()
    assert {t: r["status"] for t, r in store.rows.items()} == {"t0000": "lost",
                                                               "t0001": "failed"}
    assert _claimer(executor._registry, "t0002")(seed["arch_hash"]) is None
