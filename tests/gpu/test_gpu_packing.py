"""Two jobs packed on one GPU through Ray, each training with CUDA graphs: the
throughput benchmark's own row, at a small size."""


import pytest
import torch

from support import REPO, load_script, local_ray

# own_ray: one GPU declared on a Ray instance of their own (conftest)
pytestmark = [pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
              pytest.mark.own_ray]


def _benchmark():
    return load_script(REPO / "benchmarks" / "gpu_throughput.py")


def test_two_graphed_jobs_share_one_gpu():
    """Each job asks Ray for half of the one GPU and waits at a barrier until the other
    has started too: `together` == 2 means both held their half at once. Fails if Ray
    does not place both on the GPU at the same time, or if either job's step was not
    replayed as a graph there."""
    bench = _benchmark()
    config = bench.bench_config(True, train_images=8 * 32, epochs=3, batch_size=32)
    with local_ray(num_cpus=4, num_gpus=1):
        row = bench.measure_row(config, "search", bench.REDUCED_MACRO, "graphed", jobs=2,
                                cpus=4.0, threads=1)
    print(bench.HEAD, bench.format_row(row, None), sep="\n")
    assert row["together"] == 2 and row["graphed_jobs"] == 2
    jobs = row["jobs_raw"]
    assert [job["device"] for job in jobs] == ["cuda", "cuda"]
    ids = [job["gpu_ids"] for job in jobs]
    assert len(ids[0]) == 1 and ids[0] == ids[1], ids         # the one GPU, shared
    assert all(job["training_step"]["replayed"] > 0 for job in jobs)
