"""(b) A Ray worker node removed mid-job: Ray retries the job on the surviving node and
the search completes with no failed trial."""

import json
import threading
import time

import pytest
import ray
from ray.cluster_utils import Cluster

from petrinas.config import load_config
from petrinas.search.runner import run_search
from petrinas.search.store import history
from support import TINY


@pytest.fixture
def two_nodes():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster, worker
    ray.shutdown()
    cluster.shutdown()


def running(run_dir) -> int:
    events = [r["event"] for r in history(run_dir)] if (run_dir / "journal.jsonl").exists() \
        else []
    return events.count("submit") - sum(e in ("result", "failed", "cancelled") for e in events)


def test_worker_node_removed_mid_job(tmp_path, two_nodes):
    cluster, worker = two_nodes
    worker_id = worker.node_id
    config = load_config("petridish_digits", [
        *TINY, "search.max_trials=6", "search.seed_train.epochs=6",
        "search.post_train.epochs=3", "resources.max_retries=2"])
    outcome = {}
    thread = threading.Thread(
        target=lambda: outcome.update(summary=run_search(config, tmp_path / "run")))
    thread.start()
    deadline = time.time() + 120
    while running(tmp_path / "run") < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert running(tmp_path / "run") == 2, "both nodes busy before the removal"
    time.sleep(1.0)  # well inside the jobs: each trains for several seconds
    cluster.remove_node(worker)
    removed_at = time.time()
    thread.join(timeout=300)
    assert not thread.is_alive()

    summary = outcome["summary"]
    assert summary.trials == 6 and summary.failed == 0
    late_on_lost_node = []
    for trial in (tmp_path / "run" / "trials").iterdir():
        notes = json.loads((trial / "metrics.json").read_text())["notes"]
        if notes["node_id"] == worker_id and notes["finished_at"] > removed_at:
            late_on_lost_node.append(trial.name)
    assert not late_on_lost_node
