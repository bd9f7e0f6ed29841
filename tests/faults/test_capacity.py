"""(c) Capacity that changes under a running search (ray.cluster_utils.Cluster: several
Ray nodes on this machine): a node added mid-run is used at once; with every worker node
gone the driver waits, says so, and finishes when a node comes back, losing nothing."""

import threading

import pytest
import ray
from ray.cluster_utils import Cluster

from petrinas.config_loader import load_config
from petrinas.engine.runner import run_search
from support import TINY, Ticks, raylet_pid, trials_running, wait_for
from test_node_loss import in_flight

# A cluster of their own: the suite's shared instance is stopped first (conftest).
pytestmark = pytest.mark.own_ray

# Seeds of some seconds: the second node must join and start its job while the first
# node's seed still trains. The moments the test acts on are events (a job started in
# its worker, a pass of the loop), never a guess of how long something takes.
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


def search_in_background(config, run_dir, progress):
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(
        summary=run_search(config, run_dir, progress=progress)))
    thread.start()
    return thread, outcome


def test_a_node_added_is_used_and_losing_every_worker_waits_then_completes(tmp_path,
                                                                          cluster):
    """One search, two changes of capacity. The head has no CPU, so jobs run on worker
    nodes only: first one 1-CPU worker (one job at a time); a second node added mid-run
    raises the jobs running to two; then both workers are removed mid-job and the driver
    waits, saying so; a node added back lets it finish with nothing lost.

    Fails if the driver submits more jobs than the cluster can run, does not use a node
    added, exits or drops or adds a trial when every worker is gone, or does not resume
    when a node comes back."""
    first = cluster.add_node(num_cpus=1)
    connect(cluster)
    run = tmp_path / "run"
    ticks = Ticks()
    thread, outcome = search_in_background(
        load_config("petridish_digits", [*SLOW, "search.max_trials=5"]), run, ticks)
    wait_for(lambda: len(in_flight(run)) == 1, "the first seed submitted")
    # Three passes of the loop (each refills the free slots) with one CPU: one job.
    assert [t.running for t in ticks.after(3)] == [1, 1, 1]
    assert len(in_flight(run)) == 1, "one CPU in the cluster: one job at a time"
    second = cluster.add_node(num_cpus=1)
    wait_for(lambda: len(in_flight(run)) == 2, "a second job on the new node")

    # Inside the jobs: both have started in their workers, one on each node, so the
    # loss interrupts them (a job still waiting for its worker would need no retry).
    nodes = [raylet_pid(first), raylet_pid(second)]
    wait_for(lambda: all(trials_running(under=node) for node in nodes),
             "a job running on each node")
    running_at_loss = in_flight(run)
    cluster.remove_node(first)
    cluster.remove_node(second)
    log = run / "logs" / "search.log"
    wait_for(lambda: "waiting for capacity" in log.read_text(), "the driver says it waits")
    waited = ticks.after(3)                  # three more passes of the loop, waiting
    assert all(t.note.startswith("waiting for capacity") for t in waited), waited
    assert thread.is_alive(), "it waits: no exit, no error"
    assert in_flight(run) == running_at_loss  # nothing new submitted, nothing dropped
    cluster.add_node(num_cpus=1)
    thread.join(timeout=600)                 # a guard against a hang only
    assert not thread.is_alive()
    summary = outcome["summary"]
    assert (summary.trials, summary.pool, summary.failed) == (5, 5, 0)
    assert "capacity is back: 1 slots" in log.read_text()
