"""Ray behind one adapter: remote trial tasks and the executor that keeps slots busy.

This is the only module of the package that imports ray. Tasks receive plain data (the
declaration of the trial's kind, a config, a description as a dict, weights as an object
reference) and return a `TrialOutput`; nothing is read from or written to a shared
filesystem. A system failure (a dead worker or node) is retried by Ray up to
`resources.max_retries` times; an exception raised by the job itself is not retried and
comes back as the trial's error.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import ray
from ray.exceptions import GetTimeoutError, RayError, RayTaskError, TaskCancelledError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from petrinas.config import Config
from petrinas.errors import InputError, plain
from petrinas.search.kinds import JobKind
from petrinas.search.rows import claim_key

log = logging.getLogger(__name__)

# Parent weights kept in the object store for reuse by later children of the same parent.
WEIGHT_CACHE_SIZE = 16


def run_trial(kind: JobKind, config: Config, payload: dict, weights: bytes | None,
              seed: int, want_gpu: bool, cpu_threads: int, claim_as: tuple | None):
    """A trial, in a Ray worker (the body of the task below; a task that wraps the real
    job, a test's, calls it). Explicit imports: a worker needs no set-up step. `kind` is
    the declaration itself, not its name: a kind declared anywhere (a test's, a
    script's) runs without the worker knowing any registry of kinds."""
    from petrinas.train import pipeline

    start = pipeline.Stopwatch.begin()
    device = pipeline.pick_device(want_gpu)
    ctx = pipeline.JobContext(
        seed=seed, device=device, cpu_threads=cpu_threads,
        memory_limit_mb=config.resources.memory_per_job_mb if device == "cpu" else 0,
        device_share=config.resources.gpus_per_job if device == "cuda" else 1.0)
    claim = pipeline.no_claims if claim_as is None else _claimer(*claim_as)
    try:
        output = run_job(kind, config, payload, weights, ctx, claim)
    except Exception as exc:
        pipeline.note_spent(exc, start, ctx)   # a failed trial counts its compute too
        raise
    output.notes["node_id"] = ray.get_runtime_context().get_node_id()
    return output


# The worker process is titled "ray::run_trial" while it runs one.
_trial_task = ray.remote(run_trial)


def run_job(kind: JobKind, config: Config, payload: dict, weights: bytes | None, ctx,
            claim):
    """What a trial of `kind` runs: the job its declaration names."""
    return job_function(kind)(config, payload, weights, ctx, claim)


def job_function(kind: JobKind) -> Callable:
    """The function a kind's `job` ("module:function") names, imported on first use (in
    the Ray worker). Here, not in search/kinds.py: the search imports nothing by name."""
    module, _, name = kind.job.partition(":")
    return getattr(importlib.import_module(module), name)


def _claimer(registry, trial_id: str, parent_id: str = ""):
    """claim(arch) through the registry, keyed by (parent, architecture) (rows.claim_key);
    if the registry cannot be reached, the trial trains its architecture anyway:
    deduplication saves compute, it must never fail a trial."""
    def claim(arch: str) -> str | None:
        try:
            return ray.get(registry.claim.remote(claim_key(parent_id, arch), trial_id),
                           timeout=60)
        except (RayError, GetTimeoutError) as exc:
            log.warning("%s: architecture registry unreachable (%s); training anyway",
                        trial_id, _one_line(exc))
            return None
    return claim


@ray.remote(num_cpus=0)
class ArchRegistry:
    """Which trial owns each claim key (rows.claim_key: parent and architecture), for
    the whole session: a job claims its key before training, and learns whether another
    trial got there first (finished or still training). Seeded at start with the run's
    trained models (rows.claim_owners), so their claims survive a driver restart; a
    claim of a trial that fails or is cancelled is released, so a later trial of that
    key trains it."""

    def __init__(self, owners: dict[str, str]):
        self.owners = dict(owners)

    def claim(self, key: str, trial_id: str) -> str | None:
        """None if `trial_id` owns `key` now (or already did), else the owner's id."""
        owner = self.owners.setdefault(key, trial_id)
        return None if owner == trial_id else owner

    def release(self, trial_id: str) -> int:
        """Drop every claim `trial_id` holds; returns how many. A failed trial rarely
        happens, so a scan of the keys is cheap enough."""
        keys = [k for k, owner in self.owners.items() if owner == trial_id]
        for key in keys:
            del self.owners[key]
        return len(keys)


@dataclass
class Completion:
    trial_id: str
    output: Any = None          # a rows.TrialOutput when the job succeeded
    error: str | None = None    # one line: why it failed
    detail: str = ""            # the full traceback, for the trial folder
    spent: dict = field(default_factory=dict)  # a failed job's compute_s and device, if known


# How long a stage waits for the cluster it is told to join to take a connection.
# ray.init has no bound of its own on an address with nothing behind it (Ray 2.60 was
# still retrying "Failed to connect to GCS" every 30-40 s when killed after 2 minutes),
# so the address is tried first with a plain TCP connection, bounded by this.
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RayOptions:
    """How a stage reaches Ray: the cluster to join (None: $RAY_ADDRESS, else a local
    instance of its own) and whether Ray's own log lines may reach the terminal."""
    address: str | None = None
    verbose: bool = False

    def check_reachable(self, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        """One line (InputError) unless the cluster to join takes a TCP connection within
        `timeout_s`. Called before a stage writes anything: a wrong address leaves no
        run folder behind. Nothing to check for a local instance, for Ray's own
        "auto"/"local", or when Ray is already up in this process (ray_session uses it)."""
        address, named = _address(self.address)
        if not address or ray.is_initialized():
            return
        host, port = _host_port(address, named)
        if host is None:
            return
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
        except OSError as exc:
            why = (f"no answer within {timeout_s:g} s" if isinstance(exc, TimeoutError)
                   else "unknown host" if isinstance(exc, socket.gaierror)
                   else exc.strerror or type(exc).__name__)
            raise InputError(
                f"{named}: cannot reach the Ray cluster ({why.lower()}); check "
                f"that its head node is up (`ray status` there) and that {host}:{port} is "
                "the address `ray start --head` printed, reachable from here") from None


def _address(given: str | None) -> tuple[str | None, str]:
    """The cluster address to join, and how an error names it (the option or the
    environment variable it came from)."""
    if given:
        return given, f"--address {given}"
    address = os.environ.get("RAY_ADDRESS") or None
    return address, f"RAY_ADDRESS={address}"


def _host_port(address: str, named: str) -> tuple[str | None, int]:
    """(host, port) of HOST:PORT or ray://HOST:PORT; (None, 0) for what Ray resolves
    itself ("auto", "local", a host without a port)."""
    rest = address.split("://", 1)[-1]
    host, sep, port = rest.rpartition(":")
    if not sep or not host:
        return None, 0
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"{named}: expected HOST:PORT (the address "
                         "`ray start --head` printed)")
    return host.strip("[]"), int(port)


@contextmanager
def ray_session(options: RayOptions, log_path: Path) -> Iterator[None]:
    """Ray for the duration of the block: joined, or started locally and shut down after.

    The terminal belongs to petrinas: unless `options.verbose`, everything Ray prints
    (its Python loggers, its C++ core, the processes it spawns) goes to `log_path`.
    A Ray instance that is already up (a notebook, a test) is used as it is."""
    if ray.is_initialized():
        yield
        return
    options.check_reachable()
    address = options.address or os.environ.get("RAY_ADDRESS")
    env = {"RAY_USAGE_STATS_ENABLED": os.environ.get("RAY_USAGE_STATS_ENABLED", "0"),
           "RAY_DEDUP_LOGS": "0"}
    if not address:
        # Ray binds its services to every interface and cannot be told to use loopback
        # alone, so a local instance is closed with Ray's token authentication instead,
        # turned on explicitly: Ray >= 2.59 would do so by default (with a warning on the
        # terminal), older releases not at all. The token is Ray's own: $RAY_AUTH_TOKEN,
        # $RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token (which Ray creates if missing), so
        # the same user can still join with Ray's tools (RAY_AUTH_MODE=token).
        env["RAY_AUTH_MODE"] = "token"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with _ray_environment(env), _ray_logger_to(log_path, options.verbose), \
            _process_output_to(None if options.verbose else log_path):
        _init(address)
        log.info("Ray %s at %s (%s)", ray.__version__,
                 ray.get_runtime_context().gcs_address,
                 f"joined {address}" if address else "local instance, token authentication")
        try:
            yield
        finally:
            ray.shutdown()


@contextmanager
def jobs_ray(num_cpus: int) -> Iterator[None]:
    """Ray for a benchmark's own jobs: the instance this process has joined already (a
    notebook's, a test's), used as it is, else a local one of `num_cpus` CPUs ("local":
    never a `ray start` cluster found on the machine), shut down after."""
    if ray.is_initialized():
        yield
        return
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
             log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def _init(address: str | None) -> None:
    common = dict(logging_level=logging.INFO, log_to_driver=False, configure_logging=True)
    if address:
        try:
            ray.init(address=address, **common)
        except (ConnectionError, RayError) as exc:
            raise InputError(
                f"--address {address}: cannot join the Ray cluster ({_one_line(exc)}); if it "
                "uses token authentication, set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or "
                "~/.ray/auth_token) to its token") from None
        return
    import torch
    # "local": a new instance of our own, even where `ray start` left a cluster (or its
    # address file) on this machine, which a plain ray.init() would join instead.
    ray.init(address="local", num_cpus=os.cpu_count(), num_gpus=torch.cuda.device_count(),
             include_dashboard=False, **common)


@contextmanager
def _ray_environment(values: dict[str, str]) -> Iterator[None]:
    """Set RAY_* environment variables for the block; Ray's processes inherit them.

    Ray reads its settings once, when it is imported, so this process re-reads them
    (`Config.initialize`, which Ray calls itself when it turns token authentication on)
    on the way in and again on the way out."""
    from ray._raylet import Config

    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    Config.initialize("")
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        Config.initialize("")


@contextmanager
def _ray_logger_to(path: Path, verbose: bool) -> Iterator[None]:
    """The `ray` logger writes to `path` (and to stderr too when verbose), whatever
    sys.stderr is: in a notebook or a test it is not file descriptor 2."""
    logger = logging.getLogger("ray")
    saved = logger.handlers[:], logger.propagate
    handler = logging.FileHandler(path)
    logger.handlers = [handler] + ([logging.StreamHandler()] if verbose else [])
    logger.propagate = False
    try:
        yield
    finally:
        logger.handlers, logger.propagate = saved
        handler.close()


@contextmanager
def _process_output_to(path: Path | None) -> Iterator[None]:
    """Point file descriptors 1 and 2 at `path` for the block (None: leave them).

    Ray's C++ core writes its warnings straight to descriptor 2, and the processes
    `ray.init` spawns inherit it, so redirecting Python's sys.stderr is not enough.
    petrinas' own progress line writes to a duplicate of the terminal taken earlier
    (see progress.py)."""
    if path is None:
        yield
        return
    try:
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        target = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved + [target]:
            os.close(fd)


def cluster_slots(gpus_per_job: float, cpus_per_job: float, memory_mb: int = 0) -> int:
    """How many jobs the cluster can run at once: by its CPUs, its GPUs (if jobs use
    them) and its memory (if jobs reserve some), whichever is scarcest."""
    total = ray.cluster_resources()
    limits = [int(total.get("CPU", 0) // cpus_per_job)]
    if gpus_per_job > 0:
        limits.append(int(round(total.get("GPU", 0) / gpus_per_job, 6)))
    if memory_mb > 0:
        limits.append(int(total.get("memory", 0) // (memory_mb * 1024 * 1024)))
    return min(limits)


class RayExecutor:
    """Submits trials as Ray tasks and reports them as they finish.

    With `owners` (architecture hash -> trial id of the models trained so far), every
    job claims its architecture through an `ArchRegistry` before training it; with None
    (the eval stage) nothing is deduplicated."""

    def __init__(self, config: Config, owners: dict[str, str] | None = None, task=None):
        """`task`: the remote function a trial runs (default: the real training job;
        benchmarks of the driver pass a stand-in with the same signature)."""
        self.config = config
        res = config.resources
        options: dict[str, Any] = dict(num_cpus=res.cpus_per_job, num_gpus=res.gpus_per_job,
                                       max_retries=res.max_retries, retry_exceptions=False)
        if res.memory_per_job_mb:
            options["memory"] = res.memory_per_job_mb * 1024 * 1024
        self._task = (task or _trial_task).options(**options)
        self._registry = None
        if owners is not None:
            # On the driver's own node: it lives as long as the driver, whatever node is
            # lost. (A lost registry would only cost deduplication, see _claimer.)
            here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(),
                                                  soft=False)
            self._registry = ArchRegistry.options(scheduling_strategy=here).remote(owners)
        self._running: dict[ray.ObjectRef, str] = {}
        self._weights: OrderedDict[str, ray.ObjectRef] = OrderedDict()

    # ----------------------------------------------------------------- capacity
    def slots(self) -> int:
        """How many trials to keep submitted: what the cluster can run now, or
        `resources.max_concurrent` when set, even beyond the cluster's size (the extra
        trials wait in Ray's queue, where an autoscaler sees the demand). 0 while the
        cluster has lost too many nodes to run one job: the loop then waits."""
        res = self.config.resources
        if res.max_concurrent:
            return res.max_concurrent
        return max(cluster_slots(res.gpus_per_job, res.cpus_per_job, res.memory_per_job_mb), 0)

    def check_capacity(self) -> None:
        """At start: a cluster that cannot run a single job is an input error (unless
        max_concurrent asks to queue jobs for an autoscaler to satisfy)."""
        res = self.config.resources
        if not res.max_concurrent and self.slots() < 1:
            raise InputError(
                f"resources.gpus_per_job={res.gpus_per_job:g}, resources.cpus_per_job="
                f"{res.cpus_per_job:g}, resources.memory_per_job_mb={res.memory_per_job_mb}: "
                f"the Ray cluster ({_describe_cluster()}) cannot run even one job")

    def waiting_for(self) -> str:
        """Why no trial can start now ('' if one can): for the status line."""
        if self.slots() > 0:
            return ""
        return f"waiting for capacity: the cluster has {_describe_cluster()}"

    def free_slots(self) -> int:
        return max(self.slots() - len(self._running), 0)

    @property
    def running(self) -> list[str]:
        return list(self._running.values())

    # ------------------------------------------------------------------ submit
    def submit(self, trial_id: str, kind: JobKind, payload: dict, *, seed: int,
               weights_key: str | None = None,
               load_weights: Callable[[], bytes] | None = None, parent_id: str = "") -> None:
        """Start a trial of `kind` (its declaration travels with the task). A parent's
        weights go into the object store once per `weights_key` (read with
        `load_weights` then) and travel to every child of that parent as a reference.
        `parent_id` is part of the trial's claim key."""
        ref = self._weights_ref(weights_key, load_weights) if load_weights else None
        res = self.config.resources
        claim_as = (self._registry, trial_id, parent_id) if self._registry is not None \
            else None
        task_ref = self._task.remote(kind, self.config, payload, ref, seed,
                                     res.gpus_per_job > 0, max(1, int(res.cpus_per_job)),
                                     claim_as)
        self._running[task_ref] = trial_id

    def _weights_ref(self, key: str | None, load: Callable[[], bytes]) -> ray.ObjectRef:
        if key is not None and key in self._weights:
            self._weights.move_to_end(key)
            return self._weights[key]
        ref = ray.put(load())
        if key is not None:
            self._weights[key] = ref
            while len(self._weights) > WEIGHT_CACHE_SIZE:
                self._weights.popitem(last=False)
        return ref

    # -------------------------------------------------------------------- wait
    def wait(self, timeout: float) -> list[Completion]:
        """Completions of the trials that finished within `timeout` seconds."""
        if not self._running:
            time.sleep(min(timeout, 0.05))
            return []
        refs = list(self._running)
        # Back as soon as one trial ends (its slot is refilled at once), with every
        # other trial that has ended by then.
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        return [self._collect(ref) for ref in ready]

    def _collect(self, ref: ray.ObjectRef) -> Completion:
        """The trial's result; a failed trial releases its claim first, so that a
        later trial of its key is not taken for its duplicate."""
        trial_id = self._running.pop(ref)
        try:
            return Completion(trial_id, output=ray.get(ref, timeout=60))
        except RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            self.release(trial_id)
            return Completion(trial_id, error=_one_line(cause), detail=plain(str(exc)),
                              spent=dict(getattr(cause, "petrinas_spent", None) or {}))
        except (RayError, GetTimeoutError) as exc:   # a dead worker: its compute is unknown
            self.release(trial_id)
            return Completion(trial_id, error=f"system failure: {_one_line(exc)}",
                              detail=plain(str(exc)))

    def release(self, trial_id: str) -> None:
        """Drop the claims of a trial that will not train its model (failed, cancelled,
        lost). Waited for: the next trial of the key may be submitted right after."""
        if self._registry is None:
            return
        try:
            ray.get(self._registry.release.remote(trial_id), timeout=30)
        except (RayError, GetTimeoutError) as exc:
            log.warning("%s: its architecture claim was not released (%s); a later trial "
                        "of it may be recorded as its duplicate", trial_id, _one_line(exc))

    def cancel_all(self) -> list[str]:
        """Cancel every running trial; returns their ids."""
        cancelled = []
        for ref, trial_id in list(self._running.items()):
            try:
                ray.cancel(ref, force=True)
            except (RayError, ValueError):
                pass
            cancelled.append(trial_id)
        for ref in list(self._running):
            try:
                ray.get(ref, timeout=10)
            except (RayError, GetTimeoutError, TaskCancelledError):
                pass
        self._running.clear()
        for trial_id in cancelled:   # resubmitted under their ids on resume, claiming again
            self.release(trial_id)
        return cancelled


def _one_line(exc: BaseException) -> str:
    text = plain(str(exc)).strip().splitlines()
    message = text[-1] if isinstance(exc, RayError) and text else (text[0] if text else "")
    return f"{type(exc).__name__}: {message}"[:500]


def _describe_cluster() -> str:
    total = ray.cluster_resources()
    return (f"{total.get('CPU', 0):g} CPUs, {total.get('GPU', 0):g} GPUs, "
            f"{total.get('memory', 0) / 2**30:.1f} GiB memory")
