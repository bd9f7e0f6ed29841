"""Durable to a power loss: every rename a resume relies on is followed by an fsync of
its directory, in the right order (a spy on the calls); a corrupt snapshot is rebuilt
from the history; a result whose files are gone is marked lost and the run goes on; a
trial that succeeds after a failed attempt leaves no error.txt."""

import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from petrinas.config_loader import load_config
from petrinas.fileio import write_bytes_atomic
from petrinas.engine import store as store_module
from petrinas.report.writers.gallery import install_folder
from petrinas.engine.runner import run_search, with_reference_point
from petrinas.engine.store import RunStore
from petrinas.search.strategy import strategy_from_config
from support import TINY, read_tsv


@pytest.fixture
def calls(monkeypatch):
    """Every os.fsync (by path) and os.replace, in order."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(src), str(dst)))
        return real_replace(src, dst)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def test_an_atomic_write_fsyncs_file_rename_then_folders(tmp_path, calls):
    path = tmp_path / "new" / "deeper" / "file.bin"
    write_bytes_atomic(path, b"x")
    tmp = str(path.with_name(f".file.bin.tmp{os.getpid()}"))
    assert calls == [
        ("fsync", str(tmp_path)),            # "new" entered tmp_path
        ("fsync", str(tmp_path / "new")),    # "deeper" entered "new"
        ("fsync", tmp),                      # the data, before it gets its name
        ("replace", tmp, str(path)),
        ("fsync", str(path.parent)),         # the rename itself
    ]


def _output(config, store, trial_id):
    from petrinas.model_desc import build_model, build_seed
    from petrinas.model_desc.model import weights_to_bytes
    desc = build_seed(config, cells=1, reductions=0, nodes=1)
    return SimpleNamespace(
        row={"macs": 1000, "params": 10, "val_top1": 0.9, "test_top1": 0.9, "epochs": 1,
             "compute_s": 1.0, "cells": 1, "reductions": 0, "nodes": 1},
        desc=desc.to_dict(), history={}, notes={},
        weights=weights_to_bytes(build_model(desc).state_dict()))


def test_a_result_is_durable_before_it_is_journaled_and_compaction_in_order(
        tmp_path, calls, monkeypatch):
    monkeypatch.setattr(store_module, "SNAPSHOT_EVERY", 2)
    config = load_config("petridish_digits", ["search.max_trials=10"])
    store = RunStore.open(tmp_path / "run", config)
    strategy = strategy_from_config(config)
    spec = strategy.suggest("t0000")
    store.record_submit("t0000", spec, strategy.rng_state())
    calls.clear()
    row = store.record_result("t0000", _output(config, store, "t0000"))
    strategy.on_trial_complete("t0000", result=row)
    run, folder = tmp_path / "run", tmp_path / "run" / "trials" / "t0000"
    names = [c[2].split("/")[-1] for c in calls if c[0] == "replace"]
    assert names == ["weights.pt", "desc.yaml", "metrics.json"]
    # The trial folder's own entry, then each file's rename, then its folder; the
    # journal record (an fsync of the journal file) comes after all of them.
    assert calls[0] == ("fsync", str(run))                      # trials/ entered run/
    assert calls[1] == ("fsync", str(run / "trials"))           # t0000 entered trials/
    journal_sync = calls.index(("fsync", str(run / "journal.jsonl")))
    last_folder_sync = max(i for i, c in enumerate(calls) if c == ("fsync", str(folder)))
    assert last_folder_sync < journal_sync == len(calls) - 1

    calls.clear()
    assert store.maybe_compact(strategy)     # 2 records: compaction is due
    snapshot_rename = next(i for i, c in enumerate(calls)
                           if c[0] == "replace" and c[2] == str(run / "snapshot.json"))
    rotation = next(i for i, c in enumerate(calls)
                    if c[0] == "replace" and c[1] == str(run / "journal.jsonl"))
    assert calls[snapshot_rename + 1] == ("fsync", str(run))    # the snapshot is durable
    assert snapshot_rename < rotation
    archive = str(run / "journal-archive")
    assert calls[rotation + 1:rotation + 3] == [("fsync", archive), ("fsync", str(run))]
    assert calls[-1] == ("fsync", str(run))  # the fresh journal's entry
    store.close()


def test_a_gallery_folder_is_durable_once_swapped_in(tmp_path, calls):
    src = tmp_path / "trials" / "t0000"
    src.mkdir(parents=True)
    for name in ("desc.yaml", "weights.pt", "metrics.json"):
        (src / name).write_text(name)
    install_folder(tmp_path / "gallery", "t0000", src)
    assert calls[-2:] == [("replace", str(tmp_path / "gallery" / ".t0000.tmp"),
                           str(tmp_path / "gallery" / "t0000")),
                          ("fsync", str(tmp_path / "gallery"))]


def test_a_corrupt_snapshot_is_rebuilt_from_the_history(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(store_module, "SNAPSHOT_EVERY", 3)
    config = load_config("petridish_digits", ["search.max_trials=30"])
    store = RunStore.open(tmp_path / "run", config)
    strategy = strategy_from_config(config)
    for i in range(7):
        tid = store.next_trial_id()
        store.record_submit(tid, strategy.suggest(tid), strategy.rng_state())
        if i % 2:
            store.record_failure(tid, "boom")
            strategy.on_trial_complete(tid, error="boom")
        store.maybe_compact(strategy)
    store.close()
    snapshot = tmp_path / "run" / "snapshot.json"
    assert list((tmp_path / "run" / "journal-archive").iterdir())
    snapshot.write_text(snapshot.read_text()[:100])        # torn by a crash or a bad disk

    with caplog.at_level(logging.WARNING, logger="petrinas.store"):
        reopened = RunStore.open(tmp_path / "run", config)
        fresh = strategy_from_config(config)
        in_flight = reopened.replay(fresh)
    assert "snapshot.json is unreadable" in caplog.text and "rebuilding" in caplog.text
    assert fresh.state_dict() == strategy.state_dict()
    assert in_flight == list(strategy.in_flight)
    assert reopened.next_trial_id() == "t0007"
    assert {t for t, r in reopened.rows.items() if r["status"] == "failed"} == \
        {"t0001", "t0003", "t0005"}
    assert {r["trial_id"] for r in store_module.read_rows(tmp_path / "run")} == \
        {"t0001", "t0003", "t0005"}
    reopened.close()


def test_success_after_a_failed_attempt_leaves_no_error_file(tmp_path):
    config = load_config("petridish_digits", ["search.max_trials=10"])
    store = RunStore.open(tmp_path / "run", config)
    strategy = strategy_from_config(config)
    store.record_submit("t0000", strategy.suggest("t0000"), strategy.rng_state())
    store.record_failure("t0000", "system failure: the node died")
    assert (tmp_path / "run" / "trials" / "t0000" / "error.txt").exists()
    store.record_result("t0000", _output(config, store, "t0000"))
    assert not (tmp_path / "run" / "trials" / "t0000" / "error.txt").exists()
    store.close()


def test_a_result_whose_files_are_gone_is_marked_lost_and_the_search_goes_on(tmp_path,
                                                                              shared_ray):
    config = load_config("petridish_digits", [*TINY, "search.max_trials=3"])
    first = run_search(config, tmp_path / "run")
    assert first.pool == 3
    rows = {r["trial_id"]: r for r in read_tsv(tmp_path / "run" / "pool.tsv")}
    (tmp_path / "run" / "trials" / "t0000" / "weights.pt").unlink()  # a seed's weights

    more = load_config("petridish_digits", [*TINY, "search.max_trials=6"])
    second = run_search(more, tmp_path / "run")
    after = {r["trial_id"]: r for r in read_tsv(tmp_path / "run" / "pool.tsv")}
    assert after["t0000"]["status"] == "lost"
    assert {t: r for t, r in after.items() if t not in ("t0000",) and t in rows} == \
        {t: r for t, r in rows.items() if t != "t0000"}
    assert len(after) == 6 and second.trials == 6
    new = [after[t] for t in ("t0003", "t0004", "t0005")]
    assert all(r["status"] in ("ok", "duplicate") for r in new)
    assert all(r["parent_id"] != "t0000" for r in new)      # never grown again
    assert "t0000" not in [p.name for p in (tmp_path / "run" / "gallery").iterdir()]
    log = (tmp_path / "run" / "logs" / "search.log").read_text()
    assert "t0000: its files are gone; marked lost" in log
