"""(b) A Ray worker node removed mid-job: Ray retries the job on the surviving node and
the search completes with no failed trial."""

import json
import threading
import time

import pytest
import ray
from ray.cluster_utils import Cluster

from petrinas.config_loader import load_config
from petrinas.engine.runner import run_search
from petrinas.engine.store import history
from support import TINY, raylet_pid, trials_running, wait_for

# A cluster of their own: the suite's shared instance is stopped first (conftest).
pytestmark = pytest.mark.own_ray


@pytest.fixture
def two_nodes():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster, worker
    ray.shutdown()
    cluster.shutdown()


def in_flight(run_dir) -> list[str]:
    """Trials submitted and not yet ended, from the journal."""
    records = history(run_dir) if (run_dir / "journal.jsonl").exists() else []
    ended = {r["trial_id"] for r in records if r["event"] in ("result", "failed")}
    return [r["trial_id"] for r in records if r["event"] == "submit"
            and r["trial_id"] not in ended]


def running(run_dir) -> int:
    return len(in_flight(run_dir))


def test_worker_node_removed_mid_job(tmp_path, two_nodes):
    """Fails if a job lost with its node is not retried on the surviving node (a failed
    trial, or a search that never ends)."""
    cluster, worker = two_nodes
    worker_id = worker.node_id
    config = load_config("petridish_digits", [
        *TINY, "search.max_trials=4", "search.seed_train.epochs=40",
        "dataset.max_train=256", "resources.max_retries=2"])
    outcome = {}
    thread = threading.Thread(
        target=lambda: outcome.update(summary=run_search(config, tmp_path / "run")))
    thread.start()
    wait_for(lambda: running(tmp_path / "run") == 2, "both nodes busy before the removal")
    # Inside the job on the worker node: it has started in its worker process (a task
    # still waiting for one would need no retry). An event, not a guess at start-up time.
    wait_for(lambda: trials_running(under=raylet_pid(worker)), "the worker node's job runs")
    running_at_removal = in_flight(tmp_path / "run")
    removed_at = time.time()   # an order of events: a retry starts after the removal
    cluster.remove_node(worker)
    thread.join(timeout=600)                  # a guard against a hang only
    assert not thread.is_alive()

    summary = outcome["summary"]
    assert summary.trials == 4 and summary.failed == 0
    # The job that was running on the lost node was run again, on the head node, after
    # the loss (the notes are those of the attempt that succeeded).
    notes = {trial.name: json.loads((trial / "metrics.json").read_text())["notes"]
             for trial in (tmp_path / "run" / "trials").iterdir()}
    retried = [t for t in running_at_removal if notes[t]["node_id"] != worker_id
               and notes[t]["started_at"] > removed_at]
    assert retried, (running_at_removal, notes)
