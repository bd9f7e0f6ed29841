"""End-to-end searches on digits: real local Ray, real training, real files."""

import asyncio
import json

import pytest
import ray

from petrinas import load_model
from petrinas.cli import search_main
from petrinas.config_loader import load_config
from petrinas.data import load_dataset
from petrinas.model_desc import ModelDesc
from petrinas.engine.jobs import run_trial
from petrinas.engine.store import history
from support import REPO, TINY, ManualClock, local_ray, read_events, read_tsv

CONTRACT_COLUMNS = ["trial_id", "parent_id", "stage", "cells", "reductions", "nodes", "macs",
                    "params", "val_top1", "test_top1"]


# The module's searches share the suite's Ray instance (2 CPUs); the 8-GPU test starts
# one of its own (last in the file: the shared one is not started again after it).
pytestmark = pytest.mark.usefixtures("shared_ray")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, shared_ray):
    out = tmp_path_factory.mktemp("search") / "run"
    code = search_main(["--out", str(out), "--quiet", "--set", "search.max_trials=6", *TINY])
    assert code == 0
    return out


def test_search_writes_every_contract_file(finished_run):
    for name in ["config.yaml", "pool.tsv", "frontier.tsv", "frontier_eps.tsv",
                 "frontier.png", "frontier.pdf", "snapshot.json", "logs/search.log"]:
        assert (finished_run / name).is_file(), name
    rows = read_tsv(finished_run / "pool.tsv")
    assert set(CONTRACT_COLUMNS) <= set(rows[0])
    assert len(rows) == 6 and len({r["trial_id"] for r in rows}) == 6
    for row in rows:
        trial = finished_run / "trials" / row["trial_id"]
        # A duplicate (an architecture its parent already grew) keeps no weights.
        weights = {"weights.pt"} if row["status"] == "ok" else set()
        assert row["status"] in ("ok", "duplicate")
        assert {"desc.yaml", "metrics.json"} | weights <= {p.name for p in trial.iterdir()}
        if row["status"] == "ok":  # a duplicate was not evaluated
            assert 0 <= float(row["val_top1"]) <= 1 and 0 <= float(row["test_top1"]) <= 1
    assert sum(r["status"] == "ok" for r in rows) >= 3   # 2 seeds, a parent's first child
    for name in ("frontier.tsv", "frontier_eps.tsv"):
        assert set(CONTRACT_COLUMNS) <= set(read_tsv(finished_run / name)[0])


def test_grown_children_have_parents_in_the_pool(finished_run):
    rows = read_tsv(finished_run / "pool.tsv")
    ids = {r["trial_id"] for r in rows}
    children = [r for r in rows if r["stage"] == "search"]
    assert len(children) >= 2
    for child in children:
        assert child["parent_id"] in ids
        parent = next(r for r in rows if r["trial_id"] == child["parent_id"])
        assert int(child["nodes"]) == int(parent["nodes"]) + 1
        assert int(child["macs"]) > int(parent["macs"])


def test_gallery_models_load_and_score_what_the_pool_says(finished_run):
    band = read_tsv(finished_run / "frontier_eps.tsv")
    gallery = sorted(p.name for p in (finished_run / "gallery").iterdir())
    assert gallery == sorted(r["trial_id"] for r in band)
    config = load_config(finished_run / "config.yaml")
    test = load_dataset(config, split="test")
    for row in band:
        folder = finished_run / "gallery" / row["trial_id"]
        assert json.loads((folder / "metrics.json").read_text())["trial_id"] == row["trial_id"]
        model = load_model(folder / "desc.yaml")
        with_logits = model(test.x).argmax(1)
        accuracy = (with_logits == test.y).float().mean().item()
        assert accuracy == pytest.approx(float(row["test_top1"]), abs=1e-5)


def readme_python_blocks_using_a_run() -> list[str]:
    """The Python blocks of the README and docs/ that read the default run's folder."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    blocks = [b for page in pages for b in page.read_text().split("```python\n")[1:]]
    return [b.split("```")[0] for b in blocks if "runs/petridish_digits" in b]


def test_the_readme_snippets_run_as_written_on_a_fresh_run(finished_run, tmp_path,
                                                            monkeypatch, capsys):
    """On a run made here, whatever ids it has: nothing in them names a trial."""
    snippets = readme_python_blocks_using_a_run()
    assert snippets
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "petridish_digits").symlink_to(finished_run)
    monkeypatch.chdir(tmp_path)
    for code in snippets:
        exec(compile(code, "README.md", "exec"), {})
    best, accuracy, cheap = capsys.readouterr().out.split()
    assert (finished_run / "gallery" / best).is_dir() and 0 < float(accuracy) <= 1


def test_export_and_draw_take_a_run_directory(finished_run, tmp_path):
    from petrinas.cli import draw_main
    assert draw_main([str(finished_run), "--out", str(tmp_path / "c"),
                      "--backend", "matplotlib"]) == 0
    assert (tmp_path / "c_normal.png").stat().st_size > 1000


def test_tensorboard_holds_every_trial_curve_and_the_run_against_compute(finished_run):
    rows = read_tsv(finished_run / "pool.tsv")
    for row in rows:
        metrics = json.loads((finished_run / "trials" / row["trial_id"] / "metrics.json")
                             .read_text())
        expected = {f"{phase}/{tag}": [(e["epoch"], pytest.approx(e[tag], rel=1e-6))
                                       for e in record["history"]]
                    for phase, record in metrics["history"].items()
                    for tag in ("train_loss", "val_loss", "train_top1", "val_top1", "lr")}
        folder = finished_run / "tensorboard" / row["trial_id"]
        # Every trial that trained an epoch (a duplicate's search phase too) has curves.
        assert (read_events(folder) if folder.is_dir() else {}) == expected
    run = read_events(finished_run / "tensorboard" / "run")
    assert set(run) == {"run/pool_size", "run/frontier_size", "run/best_val_error",
                        "run/hypervolume_val", "run/hypervolume_test"}
    sizes = [v for _, v in run["run/pool_size"]]   # one point per result, in arrival
    assert len(sizes) == len(rows) and sizes == sorted(sizes)
    assert sizes[-1] == sum(r["status"] == "ok" for r in rows)
    hv = read_tsv(finished_run / "hypervolume.tsv")
    assert run["run/hypervolume_test"] == [
        (round(float(h["compute_s"])), pytest.approx(float(h["hv_test"]))) for h in hv]


def test_rerunning_a_finished_search_changes_nothing(finished_run):
    before = (finished_run / "pool.tsv").read_text()
    code = search_main(["--out", str(finished_run), "--quiet", "--set",
                        "search.max_trials=6", *TINY])
    assert code == 0
    assert (finished_run / "pool.tsv").read_text() == before


def test_another_configuration_in_the_same_directory_exits_2(finished_run, capsys):
    code = search_main(["--out", str(finished_run), "--quiet", "--set",
                        "search.max_trials=6", *TINY, "model.init_channels=6"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "model.init_channels" in err and "\n" not in err


def test_bad_config_key_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    assert search_main(["--out", str(out), "--set", "search.max_trails=3"]) == 2
    assert "did you mean search.max_trials" in capsys.readouterr().err
    assert not out.exists()


def test_max_hours_stops_and_a_larger_budget_resumes(tmp_path):
    """The time budget is a hard stop: the seeds still training are cancelled but stay
    in flight, and a resume with a larger budget trains them under their ids.

    The budget is read from a clock the test controls, not the machine's: it stands at
    0 and jumps past the 7.2 s budget as soon as both seeds are journaled as submitted. The runner acts on a stop found
    while it submits before it waits for any result, so both seeds are cut short
    however fast this machine trains them."""
    from petrinas.engine.runner import run_search

    run = tmp_path / "run"
    journal = run / "journal.jsonl"

    jumped = []

    def clock() -> float:
        if not jumped and journal.is_file() and \
                journal.read_text().count('"event":"submit"') == 2:
            jumped.append(7.5)
        return sum(jumped)

    config = [*TINY, "search.max_trials=3", "dataset.max_train=64"]
    short = run_search(load_config("petridish_digits", [*config, "search.max_hours=0.002"]),
                       run, clock=clock)
    assert short.finish_reason == "max_hours"
    assert short.elapsed_s == 7.5                           # the clock's, to the second
    assert (short.trials, short.pool) == (2, 0)              # both seeds were cut short
    events = [(r["event"], r["trial_id"]) for r in history(run)]
    assert events == [("submit", "t0000"), ("submit", "t0001")]  # no result, no cancel

    resumed = run_search(load_config("petridish_digits", [*config, "search.max_hours=1"]),
                         run, clock=ManualClock())   # time stands still: 7.5 s of 3600
    assert resumed.finish_reason == "max_trials" and resumed.pool == 3
    submitted = [r["trial_id"] for r in history(run) if r["event"] == "submit"]
    assert submitted == ["t0000", "t0001", "t0002"]          # the seeds kept their ids
    rows = {r["trial_id"]: r for r in read_tsv(run / "pool.tsv")}
    assert [rows[t]["stage"] for t in submitted] == ["seed", "seed", "search"]
    assert int(rows["t0000"]["epochs"]) == int(load_config(
        "petridish_digits", config).search.seed_train.epochs)


def test_the_compute_budget_drains_and_can_grow_on_resume_not_shrink(tmp_path):
    """max_compute_hours counts the finished trials' device seconds: once reached,
    nothing new is submitted and the trials running finish into the pool."""
    from petrinas.errors import ConfigError
    from petrinas.engine.runner import run_search

    run = tmp_path / "run"
    first = run_search(load_config("petridish_digits", [
        *TINY, "search.max_trials=30", "search.max_compute_hours=1e-6"]), run)
    assert first.finish_reason == "max_compute_hours"
    rows = read_tsv(run / "pool.tsv")
    spent = sum(float(r["compute_s"]) for r in rows)
    # 3.6 ms is less than any trial's CPU time: the first seed to finish reaches it; the
    # other one was already running (2 slots here) and finishes into the pool. No child.
    assert len(rows) == 2 and spent >= 0.0036
    with pytest.raises(ConfigError, match="search.max_compute_hours=5e-07"):
        run_search(load_config("petridish_digits", [
            *TINY, "search.max_trials=30", "search.max_compute_hours=5e-7"]), run)
    more = run_search(load_config("petridish_digits", [
        *TINY, "search.max_trials=4", "search.max_compute_hours=1"]), run)
    assert more.finish_reason == "max_trials" and len(read_tsv(run / "pool.tsv")) == 4


def test_a_finished_trial_is_adopted_through_the_loop_not_retrained(tmp_path):
    """Killed between writing a trial's folder and journaling it: the resumed loop takes
    the folder's result as it is (no job runs for it) and goes on."""
    from petrinas.engine.runner import run_search, with_reference_point
    from petrinas.engine.store import JOURNAL, RunStore
    from petrinas.search.strategy import strategy_from_config
    from petrinas.train.pipeline import JobContext, run_seed

    config = with_reference_point(load_config("petridish_digits",
                                              [*TINY, "search.max_trials=3"]))
    store = RunStore.open(tmp_path / "run", config)
    strategy = strategy_from_config(config)
    spec = strategy.suggest("t0000")
    store.record_submit("t0000", spec, strategy.rng_state())
    store.record_result("t0000", run_seed(config, spec.macro, JobContext(seed=1)))
    store.records.pop()  # the kill: the result record never reached the journal
    (tmp_path / "run" / JOURNAL).write_text(
        "".join(json.dumps(r) + "\n" for r in store.records))
    store.close()
    metrics = (tmp_path / "run" / "trials" / "t0000" / "metrics.json").read_bytes()

    summary = run_search(config, tmp_path / "run")
    assert summary.finish_reason == "max_trials" and summary.pool == 3
    assert (tmp_path / "run" / "trials" / "t0000" / "metrics.json").read_bytes() == metrics
    log = (tmp_path / "run" / "logs" / "search.log").read_text()
    assert "t0000: adopted the result written before the last stop" in log
    assert "t0000: submitted" not in log
    assert [r["event"] for r in history(tmp_path / "run")][:2] == ["submit", "result"]


def test_a_trial_does_not_depend_on_what_its_worker_ran_before():
    import torch
    from petrinas.train.pipeline import JobContext, run_seed

    config = load_config("petridish_digits", [*TINY])
    first = run_seed(config, (1, 0, 1), JobContext(seed=3, cpu_threads=1))
    torch.randn(1000)  # another job's random draws in the same process
    second = run_seed(config, (1, 0, 1), JobContext(seed=3, cpu_threads=1))
    assert first.weights == second.weights and first.row["val_top1"] == second.row["val_top1"]


def test_one_slot_and_a_fixed_seed_reproduce_a_search(tmp_path):
    tables = []
    for name in ("a", "b"):
        code = search_main(["--out", str(tmp_path / name), "--quiet", "--set",
                            "search.max_trials=5", "resources.max_concurrent=1", *TINY])
        assert code == 0
        timed = ("compute_s", "elapsed_s", "latency_ms")   # measured: differ run to run
        tables.append([{k: v for k, v in r.items() if k not in timed}
                       for r in read_tsv(tmp_path / name / "pool.tsv")])
    assert tables[0] == tables[1]
    assert any(r["stage"] == "search" for r in tables[0])


@ray.remote(num_cpus=0)
class Barrier:
    """Lets its callers through once `parties` of them are waiting at the same time."""

    def __init__(self, parties: int):
        self.parties, self.arrived = parties, 0
        self.everyone = asyncio.Event()

    async def wait(self) -> int:
        self.arrived += 1
        if self.arrived >= self.parties:
            self.everyone.set()
        await self.everyone.wait()
        return self.arrived


def trials_meeting_at(barrier):
    """The real trial task (jobs.run_trial), entered only once every trial of the barrier
    is running: a trial that Ray does not start while the others run holds them all."""
    @ray.remote
    def met(*args):
        # Only a guard against a hang: the arrival of every trial is the event waited for.
        ray.get(barrier.wait.remote(), timeout=300)
        return run_trial(*args)
    return met


@pytest.mark.own_ray
def test_eight_declared_gpus_run_eight_jobs_at_once(tmp_path):
    """Fails if the driver keeps fewer than 8 jobs submitted with 8 GPUs declared, or
    asks Ray for resources that let it run fewer than 8 at once: the trials meet at a
    barrier before they train, which only 8 running at the same time pass."""
    from petrinas.engine.runner import run_search

    config = load_config("petridish_digits", [
        *TINY, "search.seeds.cells=[1, 4]", "search.seeds.nodes=[1, 2]",  # 8 seed shapes
        "search.max_trials=8", "search.seed_train.epochs=1", "dataset.max_train=64",
        "resources.gpus_per_job=1", "resources.cpus_per_job=1"])
    with local_ray(num_cpus=8, num_gpus=8):
        barrier = Barrier.remote(8)
        summary = run_search(config, tmp_path / "run", task=trials_meeting_at(barrier))
        assert summary.failed == 0, "a trial waited at the barrier for others never started"
        assert summary.trials == 8 and ray.get(barrier.wait.remote()) == 9
