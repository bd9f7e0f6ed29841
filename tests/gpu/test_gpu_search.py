"""A real search on CUDA: four trials, two jobs sharing one GPU through Ray."""

import json

import pytest
import torch

from petrinas.config_loader import load_config
from support import SYNTHETIC_SMALL, TINY, local_ray, read_tsv

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture
def one_gpu_ray():
    with local_ray(num_cpus=4, num_gpus=1):  # one GPU, even on a machine with more
        yield


def test_four_trials_two_jobs_on_one_gpu(tmp_path, one_gpu_ray):
    from petrinas.engine.runner import run_search

    config = load_config("petridish_digits", [
        *TINY, *SYNTHETIC_SMALL, "search.seeds.cells=[1, 2]", "search.max_trials=4",
        "search.seed_train.epochs=3", "resources.gpus_per_job=0.5",
        "resources.cpus_per_job=1"])
    summary = run_search(config, tmp_path / "run")
    assert summary.trials == 4 and summary.failed == 0
    rows = read_tsv(tmp_path / "run" / "pool.tsv")
    assert all(r["status"] in ("ok", "duplicate") for r in rows) and len(rows) == 4
    assert any(r["stage"] == "search" for r in rows)
    spans = []
    for row in rows:
        metrics = json.loads((tmp_path / "run" / "trials" / row["trial_id"]
                              / "metrics.json").read_text())
        assert metrics["device"].startswith("cuda:")  # with the GPU's name
        spans.append((metrics["notes"]["started_at"], metrics["notes"]["finished_at"]))
        for phase in metrics["history"].values():
            assert phase["final"]["precision"] in ("bfloat16", "float16")
    # Two slots on the one GPU: some two jobs ran at the same time.
    spans.sort()
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))
