"""The search loop: strategy <-> executor <-> store, with the stop rules of the design.

Whenever a job ends, the loop asks the strategy for as many new jobs as there are free
slots, so every slot of the cluster stays busy. Every decision is journaled before it is
acted on (see store.py); killing the driver at any moment loses nothing, and running the
same command again resumes.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from petrinas.config import Config
from petrinas.errors import InputError
from petrinas.search.jobs import Completion, RayExecutor, RayOptions, ray_session
from petrinas.search.progress import Progress
from petrinas.search.report import Reporter
from petrinas.search.store import RunStore, read_trial_desc
from petrinas.search.strategy import SEARCH, JobSpec, PetridishStrategy, strategy_from_config

log = logging.getLogger("petrinas.search")

WAIT_S = 1.0


@dataclass
class SearchSummary:
    run_dir: Path
    trials: int
    failed: int
    pool: int
    frontier: int
    best_error: float | None
    finish_reason: str
    elapsed_s: float


@dataclass
class JobRequest:
    """How to run one spec: the job kind, its payload, and a parent's weights if any."""
    kind: str
    payload: object
    weights_key: str | None = None
    weights: bytes | None = None


def search_request(store: RunStore, spec: JobSpec) -> JobRequest:
    """A seed trains from its macro shape; a child gets its parent's desc and weights."""
    if spec.stage != SEARCH:
        return JobRequest(spec.stage, list(spec.macro))
    weights = (store.trial_dir(spec.parent_id) / "weights.pt").read_bytes()
    return JobRequest(SEARCH, read_trial_desc(store.dir, spec.parent_id),
                      weights_key=spec.parent_id, weights=weights)


def trial_seed(run_seed: int, trial_id: str) -> int:
    """Each trial's own seed: a resubmitted trial trains exactly as the first time."""
    return (run_seed * 1_000_003 + int(trial_id[1:])) % (2 ** 31)


class TrialLoop:
    """Keeps every slot busy with the strategy's suggestions until it is finished or a
    budget runs out. Used by the search and by the eval stage."""

    def __init__(self, config: Config, store: RunStore, strategy: PetridishStrategy,
                 executor: RayExecutor, reporter: Callable[[list[dict]], dict],
                 progress: Progress, request: Callable[[JobSpec], JobRequest],
                 max_seconds: float, max_trials: int):
        self.config = config
        self.request = request
        self.max_seconds = max_seconds
        self.max_trials = max_trials
        self.store = store
        self.strategy = strategy
        self.executor = executor
        self.reporter = reporter
        self.progress = progress
        self.finish_reason = ""
        self.summary: dict = {}     # the reporter's latest counts, for the status line

    def run(self, in_flight: list[str]) -> str:
        self._resume(in_flight)
        try:
            while not self._should_stop():
                self._fill()
                if not self.executor.running:
                    self.finish_reason = self.strategy.finish_reason() or "nothing to run"
                    break
                for completion in self.executor.wait(WAIT_S):
                    self._handle(completion)
                self._show()
        finally:
            self.progress.close()
        self._cancel_running()
        return self.finish_reason

    # --------------------------------------------------------------------- steps
    def _resume(self, in_flight: list[str]) -> None:
        """Trials in flight at the last stop: adopt a completed folder, else resubmit."""
        for trial_id in in_flight:
            row = self.store.adopt_finished(trial_id)
            if row is not None:
                log.info("%s: adopted the result written before the last stop", trial_id)
                self.strategy.on_trial_complete(trial_id, result=row)
            else:
                log.info("%s: resubmitted (in flight at the last stop)", trial_id)
                self._submit(trial_id, self.store.specs[trial_id])
        if in_flight:
            self._report()

    def _should_stop(self) -> bool:
        if self.store.elapsed() >= self.max_seconds:
            self.finish_reason = "max_hours"
            return True
        if self.strategy.stop_reason:
            self.finish_reason = self.strategy.stop_reason
            return True
        return False

    def _fill(self) -> None:
        for _ in range(self.executor.free_slots()):
            trial_id = self.store.next_trial_id()
            spec = self.strategy.suggest(trial_id)
            if not isinstance(spec, JobSpec):
                return
            self.store.record_submit(trial_id, spec, self.strategy.rng_state())
            self._submit(trial_id, spec)

    def _submit(self, trial_id: str, spec: JobSpec) -> None:
        job = self.request(spec)
        self.executor.submit(trial_id, job.kind, job.payload,
                             seed=trial_seed(self.config.seed, trial_id),
                             weights_key=job.weights_key, weights=job.weights)
        log.info("%s: submitted %s", trial_id, _describe(spec))

    def _handle(self, done: Completion) -> None:
        if done.error is None:
            row = self.store.record_result(done.trial_id, done.output)
            self.strategy.on_trial_complete(done.trial_id, result=row)
            log.info("%s: done, val top-1 %.4f, %.2fM MACs, %.0fs", done.trial_id,
                     row["val_top1"], row["macs"] / 1e6, row["wall_s"])
        else:
            self.store.record_failure(done.trial_id, done.error, done.detail)
            self.strategy.on_trial_complete(done.trial_id, error=done.error)
            log.warning("%s: failed: %s", done.trial_id, done.error)
        self.store.maybe_compact(self.strategy)
        self._report()

    def _cancel_running(self) -> None:
        for trial_id in self.executor.cancel_all():
            self.store.record_cancelled(trial_id)
            self.strategy.on_trial_cancelled(trial_id)
            log.info("%s: cancelled (%s)", trial_id, self.finish_reason)

    # ------------------------------------------------------------------- output
    def _report(self) -> None:
        self.summary = self.reporter(list(self.store.rows.values()))

    def _show(self) -> None:
        summary = self.summary
        done = sum(1 for r in self.store.rows.values() if r["status"] == "ok")
        self.progress.update(
            done=done, running=len(self.executor.running), failed=self.strategy.failed,
            pool=summary.get("pool", 0), frontier=summary.get("frontier", 0),
            best_error=summary.get("best_error"), elapsed=self.store.elapsed(),
            max_trials=self.max_trials, max_seconds=self.max_seconds)


def _describe(spec: JobSpec) -> str:
    if spec.stage == SEARCH:
        return f"child of {spec.parent_id}"
    if spec.macro is None:
        return f"{spec.stage} of {spec.parent_id}"
    cells, reductions, nodes = spec.macro
    return f"seed cells={cells} reductions={reductions} nodes={nodes}"


def run_search(config: Config, run_dir: str | Path, *, address: str | None = None,
               overwrite: bool = False, progress: Progress | None = None,
               verbose: bool = False) -> SearchSummary:
    """Run (or resume) the search of `config` in `run_dir`; returns when it is finished."""
    check_data(config)
    store = RunStore.open(run_dir, config, overwrite=overwrite)
    with logging_to(store.dir / "logs" / "search.log"):
        try:
            strategy = strategy_from_config(config)
            reporter = Reporter(store.dir, config.search.convex_hull_eps,
                                config.search.plot_interval_s)
            reason = run_stage(config, store, strategy, reporter.refresh,
                               lambda spec: search_request(store, spec),
                               max_seconds=config.search.max_hours * 3600,
                               max_trials=config.search.max_trials,
                               ray_options=RayOptions(address, verbose), progress=progress)
            summary = reporter.refresh(list(store.rows.values()), final=True)
            log.info("search finished (%s) after %.0fs", reason, store.elapsed())
            return SearchSummary(run_dir=store.dir, trials=len(store.specs),
                                 failed=summary["failed"], pool=summary["pool"],
                                 frontier=summary["frontier"],
                                 best_error=summary["best_error"],
                                 finish_reason=reason, elapsed_s=store.elapsed())
        except InputError:
            store.discard_if_empty()
            raise
        finally:
            store.close()


def check_data(config: Config) -> None:
    """Load the dataset once in the driver: a missing or malformed dataset is a one-line
    input error before anything is written, not a failure in every job."""
    from petrinas.data import load_splits
    load_splits(config.dataset, config.seed, keep_uint8=True)  # no float32 copy needed


def run_stage(config: Config, store: RunStore, strategy, reporter: Callable[[list[dict]], dict],
              request: Callable[[JobSpec], JobRequest], *, max_seconds: float,
              max_trials: int, ray_options: RayOptions, progress: Progress | None) -> str:
    """Replay the journal into `strategy`, then run trials on Ray until it is finished.

    Ray is started (or joined) only when there is work left; its own log lines go to
    `logs/ray.log` in the run directory. Returns the finish reason."""
    in_flight = store.replay(strategy)
    if strategy.is_finished() and not in_flight:
        return strategy.finish_reason()
    with ray_session(ray_options, store.dir / "logs" / "ray.log"):
        executor = RayExecutor(config)
        executor.slots()  # refuse a cluster that cannot run a single job, up front
        loop = TrialLoop(config, store, strategy, executor, reporter,
                         progress or Progress(enabled=False), request=request,
                         max_seconds=max_seconds, max_trials=max_trials)
        log.info("%s: %d trials journaled, %d in flight", store.dir, len(store.specs),
                 len(in_flight))
        reason = loop.run(in_flight)
    store.compact(strategy)  # only after a clean finish: state and journal agree
    return reason


class QuietFileHandler(logging.FileHandler):
    """A log file that gives up silently when it cannot write (a full disk): losing a
    log line beats logging's traceback on the user's screen, and the write that matters
    fails on its own and stops the run cleanly."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


@contextmanager
def logging_to(path: Path) -> Iterator[None]:
    """Full logs of the petrinas loggers into `path` while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = QuietFileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("petrinas")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
