"""The run directory: journal, torn records, lock, configuration checks. Real files."""

import json
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml

from petrinas.config_loader import load_config
from petrinas.errors import ConfigError, InputError
from petrinas.engine.store import JOURNAL, RunStore
from petrinas.search.strategy import JobSpec, strategy_from_config


@pytest.fixture
def config():
    return load_config("petridish_digits", ["search.max_trials=10"])


def submit(store, strategy, n):
    ids = []
    for _ in range(n):
        tid = store.next_trial_id()
        spec = strategy.suggest(tid)
        store.record_submit(tid, spec, strategy.rng_state())
        ids.append(tid)
    return ids


def test_submissions_are_journaled_and_replayed(tmp_path, config):
    store = RunStore.open(tmp_path / "run", config)
    strategy = strategy_from_config(config)
    ids = submit(store, strategy, 3)
    store.record_failure(ids[1], "ValueError: bad op", "Traceback ...")
    strategy.on_trial_complete(ids[1], error="ValueError: bad op")
    store.close()

    reopened = RunStore.open(tmp_path / "run", config)
    fresh = strategy_from_config(config)
    in_flight = reopened.replay(fresh)
    assert in_flight == [ids[0], ids[2]]
    assert fresh.state_dict() == strategy.state_dict()
    assert reopened.next_trial_id() == "t0003"
    assert reopened.rows[ids[1]]["status"] == "failed"
    assert (tmp_path / "run" / "trials" / ids[1] / "error.txt").read_text().startswith("Trace")
    reopened.close()


def test_a_torn_last_record_is_dropped(tmp_path, config):
    store = RunStore.open(tmp_path / "run", config)
    submit(store, strategy_from_config(config), 2)
    store.close()
    journal = tmp_path / "run" / JOURNAL
    with open(journal, "a") as f:
        f.write('{"seq": 2, "event": "subm')  # killed mid-write
    reopened = RunStore.open(tmp_path / "run", config)
    assert [r["trial_id"] for r in reopened.records] == ["t0000", "t0001"]
    assert journal.read_text().endswith("}\n")
    reopened.close()


def test_a_corrupt_record_in_the_middle_is_an_error(tmp_path, config):
    store = RunStore.open(tmp_path / "run", config)
    submit(store, strategy_from_config(config), 2)
    store.close()
    journal = tmp_path / "run" / JOURNAL
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join([lines[0], "garbage", lines[1]]) + "\n")
    with pytest.raises(ConfigError, match="corrupt record on line 2"):
        RunStore.open(tmp_path / "run", config)


def test_a_second_driver_is_refused(tmp_path, config):
    store = RunStore.open(tmp_path / "run", config)
    with pytest.raises(InputError, match="in use by a running search"):
        RunStore.open(tmp_path / "run", config)
    store.close()
    RunStore.open(tmp_path / "run", config).close()


def test_a_stale_lock_of_a_killed_driver_is_taken_over(tmp_path, config):
    code = ("import sys, time; from petrinas.config_loader import load_config;"
            "from petrinas.engine.store import RunStore;"
            "RunStore.open(sys.argv[1], load_config('petridish_digits',"
            " ['search.max_trials=10'])); print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    with pytest.raises(InputError, match=f"pid {proc.pid}"):
        RunStore.open(tmp_path / "run", config)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    RunStore.open(tmp_path / "run", config).close()


def test_another_configuration_is_refused_unless_overwrite(tmp_path, config):
    RunStore.open(tmp_path / "run", config).close()
    other = load_config("petridish_digits", ["search.max_trials=10", "model.init_channels=4"])
    with pytest.raises(ConfigError, match="model.init_channels"):
        RunStore.open(tmp_path / "run", other)
    store = RunStore.open(tmp_path / "run", other, overwrite=True)
    assert store.records == []
    store.close()


CORRUPTIONS = [  # (case, what config.yaml becomes, what the refusal must say)
    ("YAML torn off", lambda text: text[:len(text) // 2] + "\n  lr: [0.1",
     ": line "),
    ("bytes that are no text", lambda text: "\x00\x01",
     ": invalid YAML (unacceptable character #x0000"),
    ("a misspelled key", lambda text: text.replace("max_trials:", "max_trails:"),
     ": unknown config key search.max_trails (did you mean search.max_trials?); "),
    ("a value of the wrong type", lambda text: text.replace("max_trials: 10", "max_trials: x"),
     ": search.max_trials: expected an integer, got str 'x'; "),
    ("not a mapping", lambda text: "- 1\n", ": expected the run's configuration (a mapping "
                                            "of config keys), got list [1]; "),
]


@pytest.mark.parametrize("case,corrupt,says", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_a_corrupt_config_yaml_is_named_with_its_fault_and_no_overwrite(tmp_path, config,
                                                                      case, corrupt, says):
    """A damaged config.yaml in a run folder: the refusal names the file and what is
    wrong with it, and does not point to --overwrite, which would delete the trials.
    Fails if the YAML error or the bad key is not named (it was 'unreadable', or 'holds
    a run of another configuration'), or if --overwrite is suggested."""
    store = RunStore.open(tmp_path / "run", config)
    submit(store, strategy_from_config(config), 1)
    store.close()
    path = tmp_path / "run" / "config.yaml"
    path.write_text(corrupt(path.read_text()))
    with pytest.raises(ConfigError) as refused:
        RunStore.open(tmp_path / "run", config)
    message = str(refused.value)
    assert message.startswith(f"{path}{says}"), message
    assert "invalid YAML" in message or case != "YAML torn off"
    assert "--overwrite" not in message and "\n" not in message
    assert message.endswith("repair it (the trials are intact), or use another --out")


def test_unknown_keys_of_a_resumable_section_in_config_yaml_still_resume(tmp_path, config):
    """A key under resources (a section a resume may change) that this version does not
    know is no fault of the file. Fails if check_run_config is given no prefixes."""
    RunStore.open(tmp_path / "run", config).close()
    path = tmp_path / "run" / "config.yaml"
    path.write_text(path.read_text().replace("resources:\n", "resources:\n  old_key: 3\n"))
    RunStore.open(tmp_path / "run", config).close()


def test_the_refusal_names_the_keys_a_user_changed_not_the_derived_ones(tmp_path):
    """A resume without the first run's --set values: the message names what the user
    changed (seeds), not the reference cost derived from it, and every such key."""
    from petrinas.engine.runner import with_reference_point

    def opened(overrides):
        return RunStore.open(tmp_path / "run", with_reference_point(
            load_config("petridish_digits", overrides)))

    opened(["search.seeds.cells=[1, 3]", "model.init_channels=4"]).close()
    with pytest.raises(ConfigError) as refused:
        opened([])
    message = str(refused.value)
    assert "search.seeds.cells: [1, 3] there, [1, 5] now" in message
    assert "model.init_channels: 4 there, 5 now" in message
    assert "hv_ref" not in message
    # Only the derived key differs when a user sets it: then it is named.
    with pytest.raises(ConfigError, match="search.hv_ref_error: 0.9 there, 0.5 now"):
        opened(["search.seeds.cells=[1, 3]", "model.init_channels=4",
                "search.hv_ref_error=0.5"])


def test_a_failed_trial_records_and_counts_what_it_spent(tmp_path, config):
    store = RunStore.open(tmp_path / "run", config)
    ids = submit(store, strategy_from_config(config), 1)
    row = store.record_failure(ids[0], "TrainingError: loss became nan", "Traceback ...",
                               spent={"compute_s": 2.5, "device": "cpu"})
    assert (row["status"], row["compute_s"], row["device"]) == ("failed", 2.5, "cpu")
    assert store.compute_s == 2.5
    store.close()


def test_the_cost_floor_is_derived_written_overridable_and_below_the_ceiling(tmp_path):
    """The box's floor is the cheapest seed's MACs (1 cell, no reduction, 1 node:
    16,690), written to config.yaml like the ceiling; a value given is kept; a floor at
    or above the ceiling is refused by name, given or derived."""
    from petrinas.engine.runner import with_reference_point

    derived = with_reference_point(load_config("petridish_digits")).search
    assert (derived.hv_cost_floor, derived.hv_ref_cost) == (16_690.0, 1_245_300.0)
    RunStore.open(tmp_path / "run", with_reference_point(load_config("petridish_digits"))
                  ).close()
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["search"][
        "hv_cost_floor"] == 16_690.0
    given = with_reference_point(load_config("petridish_digits",
                                             ["search.hv_cost_floor=5000"])).search
    assert given.hv_cost_floor == 5000.0
    with pytest.raises(ConfigError, match="search.hv_cost_floor: 2e\\+06 must be below "
                                          "search.hv_ref_cost \\(1e\\+06\\)"):
        load_config("petridish_digits", ["search.hv_cost_floor=2e6", "search.hv_ref_cost=1e6"])
    with pytest.raises(InputError, match="search.hv_cost_floor: 16690 \\(derived: the "
                                         "cheapest seed's cost\\) is not below "
                                         "search.hv_ref_cost \\(10000\\)"):
        with_reference_point(load_config("petridish_digits", ["search.hv_ref_cost=1e4"]))


def test_a_run_that_predates_the_cost_floor_resumes_with_the_derived_floor(tmp_path):
    """config.yaml written before search.hv_cost_floor existed: the key is absent there,
    which is no difference; the resumed run records the derived floor. A floor that
    differs from a recorded one is still refused."""
    from petrinas.engine.runner import with_reference_point

    config = with_reference_point(load_config("petridish_digits"))
    RunStore.open(tmp_path / "run", config).close()
    path = tmp_path / "run" / "config.yaml"
    old = yaml.safe_load(path.read_text())
    del old["search"]["hv_cost_floor"]
    path.write_text(yaml.safe_dump(old, sort_keys=False))
    RunStore.open(tmp_path / "run", config).close()
    assert yaml.safe_load(path.read_text())["search"]["hv_cost_floor"] == 16_690.0
    with pytest.raises(ConfigError, match="search.hv_cost_floor: 16690.0 there, 5000.0 now"):
        RunStore.open(tmp_path / "run", with_reference_point(
            load_config("petridish_digits", ["search.hv_cost_floor=5000"])))


def test_a_run_that_predates_a_key_resumes_at_its_default_and_not_at_another(tmp_path,
                                                                            config):
    """A config.yaml written before search.child_schedule and a phase's bn_recalibrate
    existed (an older version): resuming with their defaults is the same run; asking
    for another value is not."""
    RunStore.open(tmp_path / "run", config).close()
    path = tmp_path / "run" / "config.yaml"
    old = yaml.safe_load(path.read_text())
    del old["search"]["child_schedule"], old["search"]["post_train"]["bn_recalibrate"]
    path.write_text(yaml.safe_dump(old))
    RunStore.open(tmp_path / "run", config).close()
    path.write_text(yaml.safe_dump(old))
    other = load_config("petridish_digits", ["search.max_trials=10",
                                             "search.child_schedule=continuous"])
    with pytest.raises(ConfigError, match="search.child_schedule: 'per_phase' there, "
                                          "'continuous' now"):
        RunStore.open(tmp_path / "run", other)


@pytest.mark.parametrize("budget", ["search.max_trials=50", "search.max_hours=3",
                                    "search.max_compute_hours=2"])
def test_an_eval_resumes_after_its_search_was_given_a_larger_budget(tmp_path, budget):
    """The eval stage opens its store with the search's config.yaml, which a resumed
    search rewrites with the budget it was given."""
    from petrinas.evaluate import EVAL_RESUMABLE_KEYS
    before = load_config("petridish_digits", ["search.max_compute_hours=1"])
    RunStore.open(tmp_path / "eval", before, resumable_keys=EVAL_RESUMABLE_KEYS).close()
    after = load_config("petridish_digits", ["search.max_compute_hours=1", budget])
    RunStore.open(tmp_path / "eval", after, resumable_keys=EVAL_RESUMABLE_KEYS).close()


def test_budgets_and_resources_may_change_on_resume(tmp_path, config):
    store = RunStore.open(tmp_path / "run", config)
    ids = submit(store, strategy_from_config(config), 2)
    store.close()
    bigger = load_config("petridish_digits", ["search.max_trials=50", "resources.cpus_per_job=2"])
    reopened = RunStore.open(tmp_path / "run", bigger)
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert written["search"]["max_trials"] == 50 and written["resources"]["cpus_per_job"] == 2
    assert reopened.replay(strategy_from_config(bigger)) == ids  # the run goes on
    reopened.close()


def test_a_result_written_before_a_kill_is_adopted_not_retrained(tmp_path, config):
    store = RunStore.open(tmp_path / "run", config)
    strategy = strategy_from_config(config)
    (tid,) = submit(store, strategy, 1)
    row = {"macs": 1000, "params": 10, "val_top1": 0.9, "test_top1": 0.9,
           "train_top1": 0.95, "epochs": 1, "compute_s": 1.0, "cells": 1, "reductions": 0,
           "nodes": 1}
    from petrinas.model_desc import build_model, build_seed
    from petrinas.model_desc.model import weights_to_bytes
    desc = build_seed(config, cells=1, reductions=0, nodes=1)
    output = SimpleNamespace(row=row, desc=desc.to_dict(), history={}, notes={},
                             weights=weights_to_bytes(build_model(desc).state_dict()))
    store.record_result(tid, output)
    # Simulate a kill between the trial folder and the journal record.
    store.records.pop()
    journal = tmp_path / "run" / JOURNAL
    journal.write_text("".join(json.dumps(r) + "\n" for r in store.records))
    store.close()

    reopened = RunStore.open(tmp_path / "run", config)
    assert reopened.replay(strategy_from_config(config)) == [tid]
    adopted = reopened.adopt_finished(tid)
    assert adopted["val_top1"] == 0.9 and adopted["status"] == "ok"
    reopened.close()


def test_unwritable_directory_is_an_input_error(tmp_path, config):
    if os.geteuid() == 0:
        target = "/proc/petrinas-run"  # root ignores permissions; /proc refuses anyway
    else:
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o500)
        target = locked / "run"
    with pytest.raises(InputError, match="--out"):
        RunStore.open(target, config)


def test_specs_round_trip():
    spec = JobSpec(stage="seed", macro=(3, 1, 2))
    assert JobSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_compaction_snapshot_replays_to_the_same_state(tmp_path, config, monkeypatch):
    import petrinas.engine.store as store_module
    monkeypatch.setattr(store_module, "SNAPSHOT_EVERY", 4)
    config = load_config("petridish_digits", ["search.max_trials=30"])
    store = RunStore.open(tmp_path / "run", config)
    strategy = strategy_from_config(config)
    ids = submit(store, strategy, 9)
    for tid in ids[:5]:
        store.record_failure(tid, "boom")
        strategy.on_trial_complete(tid, error="boom")
        store.maybe_compact(strategy)
    assert (tmp_path / "run" / "snapshot.json").exists()
    archived = sorted((tmp_path / "run" / "journal-archive").iterdir())
    assert archived  # the history is kept, not thrown away
    submit(store, strategy, 1)  # a record after the snapshot
    store.close()

    reopened = RunStore.open(tmp_path / "run", config)
    fresh = strategy_from_config(config)
    in_flight = reopened.replay(fresh)
    assert fresh.state_dict() == strategy.state_dict()
    assert in_flight == list(strategy.in_flight)
    assert reopened.next_trial_id() == "t0010"
    assert len(reopened.records) < 4
    assert {r["trial_id"] for r in store_module.read_rows(tmp_path / "run")} == set(ids[:5])
    reopened.close()
