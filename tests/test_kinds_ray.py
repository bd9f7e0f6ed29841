"""A kind declared only here, never in search/kinds.py's KINDS, runs through the real
executor on a real local Ray instance: the task carries the kind's declaration, so the
worker needs no registry that knows it (looked up by name there, it would be refused as
an unknown kind).

The worker imports this module to find the kind's job: Ray's workers inherit the
environment of the process that starts Ray, so tests/ goes on PYTHONPATH before it does
(the suite's shared instance, support.SharedRay).
"""

import os

import pytest

from petrinas.config_loader import load_config
from petrinas.engine.jobs import RayExecutor
from petrinas.search.kinds import KINDS, JobKind
from petrinas.search.rows import TrialOutput
from support import TINY


def echo_job(config, payload, weights, ctx, claim) -> TrialOutput:
    """Trains nothing: sends back what it was given, and where it ran."""
    return TrialOutput(desc={"payload": payload}, weights=weights,
                       row={"seed": ctx.seed, "claimed": claim("an-arch")},
                       notes={"pid": os.getpid(), "dataset": config.dataset.name})


ECHO = JobKind("echo", job=f"{__name__}:echo_job", spec_fields=("macro",))


def test_a_kind_declared_in_a_test_runs_as_a_ray_task(shared_ray):
    """The suite's shared Ray instance puts tests/ on its workers' path (SharedRay)."""
    assert "echo" not in KINDS
    executor = RayExecutor(load_config("petridish_digits", TINY))  # no deduplication
    executor.submit("t0000", ECHO, {"macro": [1, 0, 1]}, seed=5, weights_key="p",
                    load_weights=lambda: b"weights")
    done = []
    while not done:
        done = executor.wait(5.0)
    [completion] = done
    assert completion.trial_id == "t0000" and completion.error is None, completion.detail
    output = completion.output
    assert output.desc == {"payload": {"macro": [1, 0, 1]}}
    assert output.weights == b"weights"
    assert output.row == {"seed": 5, "claimed": None}
    assert output.notes["dataset"] == "digits" and output.notes["pid"] != os.getpid()
    assert output.notes["node_id"]          # set by the task, around the kind's job
