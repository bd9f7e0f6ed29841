"""A real search on CUDA with CUDA graphs on: four trials, two jobs sharing one GPU
through Ray (test_gpu_packing.py shows, by an event, that two such jobs hold the GPU at
once)."""

import json

import pytest
import torch

from petrinas.config_loader import load_config
from support import SYNTHETIC_SMALL, TINY, local_ray, read_tsv

# own_ray: one GPU declared on a Ray instance of their own (conftest)
pytestmark = [pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
              pytest.mark.own_ray]
PHASES = ("seed_train", "search_train", "post_train")


@pytest.fixture
def one_gpu_ray():
    with local_ray(num_cpus=4, num_gpus=1):  # one GPU, even on a machine with more
        yield


def test_four_trials_two_jobs_on_one_gpu_with_cuda_graphs(tmp_path, one_gpu_ray):
    """Fails if a trial fails on CUDA, if a row does not name the GPU, if a phase does
    not train in mixed precision, or if a phase's step was not replayed as a graph."""
    from petrinas.engine.runner import run_search

    config = load_config("petridish_digits", [
        *TINY, *SYNTHETIC_SMALL, "search.seeds.cells=[1, 2]", "search.max_trials=4",
        "search.seed_train.epochs=3", "resources.gpus_per_job=0.5",
        "resources.cpus_per_job=1", *[f"search.{p}.cuda_graphs=true" for p in PHASES]])
    summary = run_search(config, tmp_path / "run")
    assert summary.trials == 4 and summary.failed == 0
    rows = read_tsv(tmp_path / "run" / "pool.tsv")
    assert all(r["status"] in ("ok", "duplicate") for r in rows) and len(rows) == 4
    assert any(r["stage"] == "search" for r in rows)
    for row in rows:
        metrics = json.loads((tmp_path / "run" / "trials" / row["trial_id"]
                              / "metrics.json").read_text())
        assert metrics["device"].startswith("cuda:")  # with the GPU's name
        for name, phase in metrics["history"].items():
            assert phase["final"]["precision"] in ("bfloat16", "float16")
            step = phase["final"]["training_step"]
            if phase["final"]["precision"] == "bfloat16":   # float16: eager, by design
                assert step["replayed"] > 0 and "failed" not in step, (name, step)
