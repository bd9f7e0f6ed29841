"""Shared fixtures.

`one_thread`: the models in these tests are tiny, so one intra-op thread is as fast as
two on an idle box, and far faster on a busy one (OpenMP workers spinning against other
processes can make a step 50x slower). torch is imported lazily so that test files which
must run without torch (the hull, the strategy) are unaffected.
"""

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def one_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shared_ray():
    """One local Ray instance for a module's in-process searches: each search would
    otherwise start (and stop) its own, a few seconds apiece. Searches find it up and
    use it as it is (jobs.ray_session). Its workers can import the test modules (tests/
    goes on the PYTHONPATH they inherit), so a job kind a test declares runs there."""
    from support import local_ray

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", os.pathsep.join(
            [str(Path(__file__).resolve().parent), *filter(None, [os.environ.get("PYTHONPATH")])]))
        with local_ray(num_cpus=2, num_gpus=0):
            yield
