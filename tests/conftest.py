"""Shared fixtures.

`one_thread`: the models in these tests are tiny, so one intra-op thread is as fast as
two on an idle box, and far faster on a busy one (OpenMP workers spinning against other
processes can make a step 50x slower). torch is imported lazily so that test files which
must run without torch (the hull, the strategy) are unaffected.
"""

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


@pytest.fixture(scope="session")
def _shared_ray_instance():
    from support import SharedRay

    shared = SharedRay()
    yield shared
    shared.close()


@pytest.fixture(scope="module")
def shared_ray(_shared_ray_instance):
    """The local Ray instance shared by the in-process searches of every module that
    asks for it (support.SharedRay: 2 CPUs, no GPU): each search would otherwise start
    (and stop) its own, a few seconds apiece, and its workers would import torch again.
    Searches find it up and use it as it is (jobs.ray_session). A test that needs a Ray
    of its own is marked `own_ray`, which stops it first; the next test that asks for it
    finds it started again (_shared_ray_kept_up)."""
    _shared_ray_instance.ensure()
    yield


@pytest.fixture(autouse=True)
def _shared_ray_kept_up(request):
    """A test marked `own_ray` (a Ray instance of its own: declared GPUs, a Cluster, or
    none at all) finds the shared instance stopped; one that asks for it finds it up."""
    if request.node.get_closest_marker("own_ray"):
        from support import stop_ray
        stop_ray()
    elif "shared_ray" in request.fixturenames:
        request.getfixturevalue("_shared_ray_instance").ensure()


def pytest_collection_modifyitems(items):
    """The tests marked `own_ray` run before all the others (in their order): each one
    stops the shared instance, and the next test that wants it would start it again, a
    few seconds and two workers importing torch again. First, not last: several are
    long (8 declared GPUs, the Clusters), and with pytest-xdist a long test started late
    leaves the other worker idle at the end."""
    items.sort(key=lambda item: item.get_closest_marker("own_ray") is None)
