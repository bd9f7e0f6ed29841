"""(c) Capacity that changes under a running search (ray.cluster_utils.Cluster: several
Ray nodes on this machine): a node added mid-run is used at once; with every worker node
gone the driver waits, says so, and finishes when a node comes back, losing nothing."""

import threading
import time

import pytest
import ray
from ray.cluster_utils import Cluster

from petrinas.config_loader import load_config
from petrinas.engine.runner import run_search
from support import TINY
from test_node_loss import in_flight

# Seeds of about 10 s: long enough to act while they train.
SLOW = [*TINY, "search.seed_train.epochs=40", "dataset.max_train=256",
        "resources.max_retries=2"]


@pytest.fixture
def cluster():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def connect(cluster: Cluster) -> None:
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)


def search_in_background(config, run_dir):
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(summary=run_search(config, run_dir)))
    thread.start()
    return thread, outcome


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, what
        time.sleep(0.05)


def test_a_node_added_is_used_and_losing_every_worker_waits_then_completes(tmp_path,
                                                                          cluster):
    """One search, two changes of capacity. The head has no CPU, so jobs run on worker
    nodes only: first one 1-CPU worker (one job at a time); a second node added mid-run
    raises the jobs running to two; then both workers are removed mid-job and the driver
    waits, saying so; a node added back lets it finish with nothing lost."""
    first = cluster.add_node(num_cpus=1)
    connect(cluster)
    run = tmp_path / "run"
    thread, outcome = search_in_background(
        load_config("petridish_digits", [*SLOW, "search.max_trials=5"]), run)
    wait_until(lambda: len(in_flight(run)) == 1, 60, "the first seed started")
    time.sleep(1.0)
    assert len(in_flight(run)) == 1, "one CPU in the cluster: one job at a time"
    second = cluster.add_node(num_cpus=1)
    wait_until(lambda: len(in_flight(run)) == 2, 30, "a second job on the new node")

    time.sleep(3.0)                          # inside the jobs: the loss interrupts them
    running_at_loss = in_flight(run)
    cluster.remove_node(first)
    cluster.remove_node(second)
    log = run / "logs" / "search.log"
    wait_until(lambda: "waiting for capacity" in log.read_text(), 30,
               "the driver says it waits")
    time.sleep(2.0)
    assert thread.is_alive(), "it waits: no exit, no error"
    assert in_flight(run) == running_at_loss  # nothing new submitted, nothing dropped
    cluster.add_node(num_cpus=1)
    thread.join(timeout=300)
    assert not thread.is_alive()
    summary = outcome["summary"]
    assert (summary.trials, summary.pool, summary.failed) == (5, 5, 0)
    assert "capacity is back: 1 slots" in log.read_text()
