"""Shared test settings: a tiny digits search that still trains and grows real models.

Importable from every test folder: pytest puts tests/ on sys.path for its conftest.py.
"""

import csv
import hashlib
import importlib.util
import os
import pickle
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from petrinas.report.progress import Progress

REPO = Path(__file__).resolve().parent.parent
# Figures are drawn at the first result and at the end (plot_interval_s: not again in
# between): each drawing costs the driver a second or more of CPU.
TINY = ["search.seeds.cells=[1, 2]", "search.seeds.reductions=[0, 0]",
        "search.seeds.nodes=[1, 1]", "search.seed_train.epochs=2",
        "search.search_train.epochs=1", "search.post_train.epochs=1",
        "model.candidate_ops=[sep_conv_3x3, max_pool_3x3, skip_connect, none]",
        "model.init_channels=4", "search.plot_interval_s=3600", "dataset.max_train=300"]
# CIFAR-shaped synthetic data, small enough for a smoke test (GPU tests, benchmarks).
SYNTHETIC_SMALL = ["dataset.name=synthetic", "dataset.synthetic_shape=[3, 32, 32]",
                   "dataset.synthetic_size=1200", "dataset.root="]
NUMERIC = ("cells", "reductions", "nodes", "macs", "params", "latency_ms", "val_top1",
           "test_top1", "train_top1", "epochs", "examples", "compute_s", "elapsed_s")


def load_script(path: Path):
    """A script that is no package module (a benchmark, .ci/versions.py), imported from
    its file under its stem's name; registered in sys.modules, where its dataclasses
    look their module up."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class ManualClock:
    """A clock that moves only when the test says so (seconds, as time.monotonic's):
    what a product part measures time on, injected through its constructor."""

    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextmanager
def local_ray(num_cpus: int, num_gpus: int) -> Iterator[None]:
    """A local Ray instance with `num_gpus` GPUs declared (real or not), for the block;
    the shared instance (SharedRay) is stopped first, if it is up."""
    import ray
    stop_ray()
    # "local": a new instance even where another process's Ray (a `ray start`, another
    # test run on the machine) left its address file, which a plain ray.init() joins,
    # refusing num_cpus/num_gpus ("When connecting to an existing cluster ...").
    ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus,
             include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def paper_search_setting(epochs: int):
    """The paper config on SYNTHETIC_SMALL (8 initial channels; the search phase
    `epochs` long in batches of 64: 864 training images, 13 full batches and one of 32)
    and its splits as a job holds them (uint8)."""
    from petrinas.config_loader import load_config
    from petrinas.data import load_splits

    config = load_config("petridish", [*SYNTHETIC_SMALL, "model.init_channels=8",
                                       f"search.search_train.epochs={epochs}",
                                       "search.search_train.batch_size=64"])
    return config, load_splits(config.dataset, config.seed, keep_uint8=True)


def grown_paper_model(config):
    """The paper's search-phase model: a 5-cell, 2-reduction, 2-node seed grown by a
    candidate of the config's ops, from seed 0."""
    import torch
    from petrinas.model_desc import build_model, build_seed
    from petrinas.model_desc.grow import grow_model

    desc = build_seed(config, cells=5, reductions=2, nodes=2)
    torch.manual_seed(0)
    return grow_model(desc, build_model(desc).state_dict(), config.model.candidate_ops)


def stop_ray() -> None:
    """Stop the Ray instance this process has joined, if any (the shared one): before a
    test starts a Ray of its own (ray.init refuses a second one) or runs a search that
    must start its own (a search uses an instance it finds up)."""
    import ray
    if ray.is_initialized():
        ray.shutdown()


class SharedRay:
    """One local Ray instance (2 CPUs, no GPU, tests/ importable by its workers) for the
    in-process searches of every module that asks for it (conftest.shared_ray): started
    when first needed, and again after a test that needed its own stopped it. A Ray
    start costs seconds, and its worker processes import torch once for all the trials
    they run; so the searches of several modules share them."""

    def __init__(self):
        self.address: str | None = None

    def ensure(self) -> None:
        import ray
        if ray.is_initialized() and \
                ray.get_runtime_context().gcs_address == self.address:
            return
        stop_ray()
        # Workers inherit the environment of the process that starts Ray: with tests/
        # and benchmarks/ on their path, a kind or task declared in a test module or a
        # benchmark script (imported by load_script under its own name) runs there.
        before = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(REPO / "tests"), str(REPO / "benchmarks"), *filter(None, [before])])
        try:
            ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False,
                     log_to_driver=False)
        finally:
            if before is None:
                os.environ.pop("PYTHONPATH")
            else:
                os.environ["PYTHONPATH"] = before
        self.address = ray.get_runtime_context().gcs_address

    def close(self) -> None:
        import ray
        if self.address and ray.is_initialized() and \
                ray.get_runtime_context().gcs_address == self.address:
            ray.shutdown()


def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc (each thread's list of the children it
    started): a walk down from one process, cheap beside a scan of all of /proc."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            threads = os.listdir(f"/proc/{parent}/task")
        except OSError:   # it ended while we looked
            continue
        for thread in threads:
            try:
                with open(f"/proc/{parent}/task/{thread}/children") as f:
                    children = [int(child) for child in f.read().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


def _title(pid: int) -> str:
    """The first word of a process's command line ('' if it is gone)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode(errors="replace").strip()
    except OSError:
        return ""


def trials_running(under: int | None = None) -> list[int]:
    """The Ray worker processes running a trial now (Ray titles a worker "ray::<task>"
    while it runs one: the event "the job has started", not a guess of how long start-up
    takes), among the descendants of process `under`: by default this test process,
    whose Ray instances and cluster nodes are its children, so that another user's Ray
    on the same machine is not counted; a node's raylet pid for the trials on that node
    (raylet_pid)."""
    from petrinas.engine.jobs import run_trial

    title = f"ray::{run_trial.__name__}"
    return sorted(pid for pid in _descendants(os.getpid() if under is None else under)
                  if _title(pid) == title)


def raylet_pid(node) -> int:
    """The raylet process of a ray.cluster_utils node (its workers are its children)."""
    from ray._private import ray_constants
    return node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid


def wait_for(condition, what: str, guard_s: float = 300.0, poll_s: float = 0.1) -> None:
    """Until `condition()` holds: an event, however long it takes on this machine.
    `guard_s` only turns a hang into a failure naming `what`; it is no bound on speed."""
    for _ in range(int(guard_s / poll_s)):
        if condition():
            return
        time.sleep(poll_s)
    raise AssertionError(f"never happened: {what}")


class Ticks(Progress):
    """A Progress for run_search that records the status of every pass of the loop (the
    loop ticks its status line once a pass): the test's count of loop passes."""

    def __init__(self):
        super().__init__(enabled=False)
        self.seen = []

    def update(self, status) -> None:
        self.seen.append(status)

    def after(self, passes: int, start: int | None = None) -> list:
        """Waits until the loop has passed `passes` more times (after pass `start`,
        default now) and returns the statuses of those passes."""
        start = len(self.seen) if start is None else start
        wait_for(lambda: len(self.seen) >= start + passes, f"{passes} passes of the loop")
        return self.seen[start:start + passes]


def read_tsv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f, delimiter="\t"))


def read_events(folder: Path) -> dict:
    """tag -> [(step, value)], read back with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"]}


def numeric(row: dict) -> dict:
    """A pool.tsv row with its numbers parsed (empty cells become None)."""
    out = dict(row)
    for key in NUMERIC:
        if key in out:
            out[key] = float(out[key]) if out[key] not in ("", None) else None
    return out


CIFAR10_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


def write_tiny_cifar10(root: Path, per_batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A CIFAR-10 folder in torchvision's on-disk format (root/cifar-10-batches-py/:
    five training batches, test_batch and batches.meta, pickled dicts with N×3072 uint8
    rows in R, G, B plane order), holding `per_batch` synthetic images per batch.

    Returns the images (N×3×32×32 uint8) and labels written, as "train_x", "train_y",
    "test_x", "test_y", and the files' MD5 checksums as "md5" (name -> hex digest)."""
    from petrinas.synthetic import synthetic_images

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    x, y = synthetic_images((3, 32, 32), 10, 6 * per_batch, seed)
    batches = {name: slice(i * per_batch, (i + 1) * per_batch)
               for i, name in enumerate(CIFAR10_BATCHES + ["test_batch"])}
    for name, rows in batches.items():
        entry = {"batch_label": name, "labels": y[rows].tolist(),
                 "data": x[rows].reshape(-1, 3 * 32 * 32),
                 "filenames": [f"{name}_{i}.png" for i in range(per_batch)]}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
             "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps(
        {"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072}, protocol=2))
    md5 = {path.name: hashlib.md5(path.read_bytes()).hexdigest() for path in folder.iterdir()}
    train = slice(0, 5 * per_batch)
    test = batches["test_batch"]
    return {"train_x": x[train], "train_y": y[train], "test_x": x[test], "test_y": y[test],
            "md5": md5}


def grown_with_every_primitive():
    """A 3-cell, 1-reduction digits model grown with every registered primitive, in
    float64: the per-pair form (pairwise.py) with random weights per pair (and
    trained-like BN statistics), and the grouped model holding the same weights."""
    import torch
    from petrinas.config_loader import load_config
    from petrinas.model_desc import build_model, build_seed
    from petrinas.model_desc.grow import grow_model
    from petrinas.model_desc.ops import PRIMITIVES
    from petrinas.model_desc.pairwise import to_grouped, to_pairwise

    config = load_config("petridish_digits", ["model.init_channels=4"])
    desc = build_seed(config, cells=3, reductions=1, nodes=1)
    torch.manual_seed(0)
    grown = grow_model(desc, build_model(desc).state_dict(), sorted(PRIMITIVES)).double()
    reference = to_pairwise(grown)
    for i, cell in enumerate(reference.cells):
        randomize(cell.candidate, seed=10 + i)
    return reference, to_grouped(reference)


def randomize(module, seed: int):
    """`module` with random weights, alphas and BN statistics (not the initial ones,
    which every copy of an op shares), different for every tensor; returns it."""
    import torch
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=generator, dtype=tensor.dtype)
                tensor.copy_(values + 0.5 if "running_var" in key else values - 0.5)
    return module


# Runs a script as `python SCRIPT ARGS` does, but with Ctrl-C (SIGINT) raising
# KeyboardInterrupt even when this test process was started with SIGINT ignored (as a
# background job of a non-interactive shell is): a child inherits the ignored signal,
# and Python then installs no handler for it, so a test's SIGINT would do nothing.
CTRL_C_ON = ("import runpy, signal, sys; signal.signal(signal.SIGINT, "
             "signal.default_int_handler); sys.argv = sys.argv[1:]; "
             "runpy.run_path(sys.argv[0], run_name='__main__')")


def interruptible(script: Path) -> list[str]:
    """The command line that runs `script` with SIGINT raising KeyboardInterrupt."""
    return [sys.executable, "-c", CTRL_C_ON, str(script)]
