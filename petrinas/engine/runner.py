"""The loop: strategy <-> executor <-> store, and the run directory's reports.

Whenever a job ends, the loop asks `stopping.Budget` whether to keep submitting, and if
so the strategy for as many new jobs as there are free slots, so every slot of the
cluster stays busy. Every decision is journaled before it is acted on (see store.py);
killing the driver at any moment loses nothing, and running the same command again
resumes.
"""

from __future__ import annotations

import logging
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

from petrinas.config import Config, cost_column, seed_macros
from petrinas.errors import InputError
from petrinas.model_desc.shapes import MeasuredShapeCosts, cheapest_seed
from petrinas.report import figures
from petrinas.engine.jobs import Completion, RayExecutor, RayOptions, ray_session
from petrinas.report.progress import Progress, format_duration
from petrinas.report.hypervolume_log import HypervolumeLog
from petrinas.report.reporter import LoopStatus, Reporter, Writer
from petrinas.report.state import ReportState
from petrinas.report.writers import FigureWriter, FrontierTables, GalleryFolders, \
    HypervolumeTable, PoolTable, StatusLine, TensorBoardWriter
from petrinas.search.rows import OK, claim_owners
from petrinas.search.stopping import Action, Budget, Verdict
from petrinas.engine.store import RunStore, read_trial_desc
from petrinas.search.kinds import KINDS, JobKind, Kinds
from petrinas.search.strategy import FINISHED, JobSpec, Strategy, strategy_from_config

log = logging.getLogger("petrinas.search")

WAIT_S = 1.0


@dataclass
class SearchSummary:
    run_dir: Path
    trials: int
    failed: int
    duplicates: int
    pool: int
    frontier: int
    best_error: float | None
    finish_reason: str
    elapsed_s: float


@dataclass
class JobRequest:
    """How to run one spec: its kind of job, the payload, and a parent's weights if any
    (read only when they are not in the object store already: `load_weights`)."""
    kind: JobKind
    payload: dict
    weights_key: str | None = None
    load_weights: Callable[[], bytes] | None = None


class JobRequests:
    """JobRequests of a stage whose parents are trials of `run_dir` (the search's own
    run directory, for the search and for its eval stage), each spec as its kind
    declares (search/kinds.py). A parent's description is read once and kept (they
    never change once written), so a parent of many children costs one YAML parse."""

    def __init__(self, run_dir: Path, kinds: Kinds = KINDS, cache_size: int = 256):
        self.run_dir = Path(run_dir)
        self.kinds = kinds
        self._desc = lru_cache(maxsize=cache_size)(
            lambda parent_id: read_trial_desc(self.run_dir, parent_id))

    def __call__(self, spec: JobSpec) -> JobRequest:
        """The kind's spec fields; a kind with a parent gets the parent's description
        too, and one that inherits its weights, those weights."""
        kind = self.kinds.get(spec.stage)
        payload = kind.payload(spec)
        if not kind.parent:
            return JobRequest(kind, payload)
        # The weights first: when a parent's files are gone, they are what is missing.
        weights = self._weights_file(spec.parent_id) if kind.inherits_weights else None
        payload["parent"] = self._desc(spec.parent_id)
        if weights is None:
            return JobRequest(kind, payload)
        return JobRequest(kind, payload, weights_key=spec.parent_id,
                          load_weights=weights.read_bytes)

    def _weights_file(self, parent_id: str) -> Path:
        weights = self.run_dir / "trials" / parent_id / "weights.pt"
        if not weights.is_file():
            raise FileNotFoundError(2, "no such file", str(weights))
        return weights


def trial_seed(run_seed: int, trial_id: str) -> int:
    """Each trial's own seed: a resubmitted trial trains exactly as the first time."""
    return (run_seed * 1_000_003 + int(trial_id[1:])) % (2 ** 31)


class TrialLoop:
    """Keeps every slot busy with the strategy's suggestions until the budget or the
    strategy says stop. Used by the search and by the eval stage."""

    def __init__(self, config: Config, store: RunStore, strategy: Strategy,
                 executor: RayExecutor, reporter: Reporter,
                 request: Callable[[JobSpec], JobRequest], budget: Budget):
        self.config = config
        self.store = store
        self.strategy = strategy
        self.executor = executor
        self.reporter = reporter
        self.request = request
        self.budget = budget
        self.waiting = ""                         # why nothing can start, if so
        self._draining = ""

    def run(self, in_flight: list[str]) -> str:
        """Run until done; returns why it stopped."""
        self._resume(in_flight)
        try:
            while True:
                verdict = self._verdict()
                if verdict.action is Action.STOP:
                    self._stop(verdict.reason)
                    return verdict.reason
                if verdict.action is Action.SUBMIT:
                    verdict = self._fill()
                    if verdict.action is Action.STOP:  # reached while submitting
                        self._stop(verdict.reason)
                        return verdict.reason
                self._set_waiting(self.executor.waiting_for())
                # Told after the refill, not between a result and the submissions it
                # frees: the status line off a terminal is printed once per result, and
                # would otherwise always count one job fewer than are running.
                self._tick()
                if not self.executor.running and not (verdict.action is Action.SUBMIT
                                                      and self.waiting):
                    return (verdict.reason or self.strategy.finish_reason()
                            or "nothing to run")
                for completion in self.executor.wait(WAIT_S):
                    self._handle(completion)
        except KeyboardInterrupt:
            self._interrupted()
            raise
        finally:
            self.reporter.loop_end()

    # --------------------------------------------------------------------- steps
    def _verdict(self) -> Verdict:
        verdict = self.budget.verdict(trials=len(self.store.specs), pooled=self.store.pooled,
                                      elapsed=self.store.elapsed(),
                                      compute=self.store.compute_s)
        if verdict.action is Action.DRAIN and self._draining != verdict.reason:
            self._draining = verdict.reason
            log.info("%s reached: no new trials; the %d running finish into the pool",
                     verdict.reason, len(self.executor.running))
        return verdict

    def _set_waiting(self, why: str) -> None:
        """Log when the cluster can no longer run a job, and when it can again."""
        if why and not self.waiting:
            log.warning("%s; the search goes on when a job fits", why)
        elif self.waiting and not why:
            log.info("capacity is back: %d slots", self.executor.slots())
        self.waiting = why

    def _resume(self, in_flight: list[str]) -> None:
        """Trials in flight at the last stop: adopt a completed folder, else resubmit."""
        for trial_id in in_flight:
            row = self.store.adopt_finished(trial_id)
            if row is not None:
                log.info("%s: adopted the result written before the last stop", trial_id)
                self.strategy.on_trial_complete(trial_id, result=row)
                self.reporter.add(row)
            else:
                log.info("%s: resubmitted (in flight at the last stop)", trial_id)
                self._submit(trial_id, self.store.specs[trial_id])

    def _fill(self) -> Verdict:
        """Submit the strategy's suggestions into the free slots while the budget allows;
        returns the last verdict, so that a stop reached while filling acts at once."""
        verdict = self._verdict()
        for _ in range(self.executor.free_slots()):
            if verdict.action is not Action.SUBMIT:
                return verdict
            trial_id = self.store.next_trial_id()
            spec = self.strategy.suggest(trial_id)
            if spec is None or spec is FINISHED:
                return verdict
            self.store.record_submit(trial_id, spec, self.strategy.rng_state())
            self._submit(trial_id, spec)
            verdict = self._verdict()
        return verdict

    def _submit(self, trial_id: str, spec: JobSpec) -> None:
        try:
            job = self.request(spec)
        except FileNotFoundError as exc:  # the parent's files vanished under the run
            self._lose_parent(trial_id, spec, exc)
            return
        self.executor.submit(trial_id, job.kind, job.payload,
                             seed=trial_seed(self.config.seed, trial_id),
                             weights_key=job.weights_key, load_weights=job.load_weights,
                             parent_id=spec.parent_id or "")
        log.info("%s: submitted %s", trial_id, job.kind.describe(spec))

    def _lose_parent(self, trial_id: str, spec: JobSpec, exc: OSError) -> None:
        error = f"parent {spec.parent_id} is lost: {exc.filename} is gone"
        row = self.store.record_failure(trial_id, error)
        self.strategy.on_trial_complete(trial_id, error=error)
        for lost in self.store.mark_lost(self.strategy):
            self.executor.release(lost)   # its model is gone: a later trial may train it
        log.warning("%s: failed: %s", trial_id, error)
        self.reporter.add(row)

    def _handle(self, done: Completion) -> None:
        if done.error is None:
            row = self.store.record_result(done.trial_id, done.output)
            self.strategy.on_trial_complete(done.trial_id, result=row)
            if row["status"] == OK:
                log.info("%s: done, val top-1 %.4f, %.2fM MACs, %.0fs", done.trial_id,
                         row["val_top1"], row["macs"] / 1e6, row["compute_s"])
            else:
                log.info("%s: the architecture of %s; skipped its training",
                         done.trial_id, row["duplicate_of"])
        else:
            row = self.store.record_failure(done.trial_id, done.error, done.detail,
                                            spent=done.spent)
            self.strategy.on_trial_complete(done.trial_id, error=done.error)
            log.warning("%s: failed: %s", done.trial_id, done.error)
        self.store.maybe_compact(self.strategy)
        self.reporter.add(row)

    def _stop(self, reason: str) -> None:
        """A hard stop: the running trials are cancelled on Ray but stay in flight in the
        journal, so a resumed run trains them under their ids (as after a kill)."""
        cancelled = self.executor.cancel_all()
        if cancelled:
            log.info("%s reached: cancelled %s; they are trained again if the run is "
                     "resumed with a larger budget", reason, ", ".join(cancelled))

    def _interrupted(self) -> None:
        """Ctrl-C: said in the log as well, which otherwise ends mid-run without a word."""
        running = sorted(self.executor.running)
        if not running:
            log.warning("interrupted (Ctrl-C) with no trial in flight; run the same "
                        "command to resume")
            return
        log.warning("interrupted (Ctrl-C): stopped %d running trial%s (%s); they stay in "
                    "flight in the journal and are trained again under their ids when the "
                    "same command is run again", len(running), "s" * (len(running) != 1),
                    ", ".join(running))

    # ------------------------------------------------------------------- output
    def _tick(self) -> None:
        """What the loop is doing, for the writers (the status line shows it)."""
        elapsed = self.store.elapsed()
        self.reporter.tick(LoopStatus(
            running=len(self.executor.running), waiting=self.waiting,
            draining=self._draining, elapsed=elapsed,
            time_left=self.budget.max_seconds - elapsed))


def run_search(config: Config, run_dir: str | Path, *, address: str | None = None,
               overwrite: bool = False, progress: Progress | None = None,
               verbose: bool = False, clock: Callable[[], float] = time.monotonic,
               task=None) -> SearchSummary:
    """Run (or resume) the search of `config` in `run_dir`; returns when it is finished.
    `clock` is what `search.max_hours` is measured on (monotonic seconds); `task`, the
    Ray task a trial runs (run_stage)."""
    check_data(config)
    config = with_reference_point(config)
    ray_options = RayOptions(address, verbose)
    ray_options.check_reachable()   # a wrong address: one line, and no run folder
    store = RunStore.open(run_dir, config, overwrite=overwrite, clock=clock)
    with logging_to(store.dir / "logs" / "search.log"):
        try:
            strategy = strategy_from_config(config, MeasuredShapeCosts(config))
            progress = progress or Progress(enabled=False)
            # closed however the search ends (Ctrl-C too): no figure thread outlives it
            with closing(search_reporter(store.dir, config, progress)) as reporter:
                reason = run_stage(config, store, strategy, reporter,
                                   JobRequests(store.dir), budget=Budget.from_config(config),
                                   dedup=True, ray_options=ray_options, progress=progress,
                                   header=lambda: _search_header(config, store), task=task)
                summary = reporter.finish()
            log.info("search finished (%s) after %.0fs", reason, store.elapsed())
            return SearchSummary(run_dir=store.dir, trials=len(store.specs),
                                 failed=summary["failed"], duplicates=summary["duplicates"],
                                 pool=summary["pool"], frontier=summary["frontier"],
                                 best_error=summary["best_error"],
                                 finish_reason=reason, elapsed_s=store.elapsed())
        except InputError:
            store.discard_if_empty()
            raise
        finally:
            store.close()


def search_reporter(run_dir: Path, config: Config, progress: Progress) -> Reporter:
    """The search's reports: its hull and band on the config's cost axis, and the
    hypervolume in the config's box (`with_reference_point`); its status line counts
    trials against the trial budget."""
    search = config.search
    state = ReportState(search.convex_hull_eps, cost_column(config), HypervolumeLog(
        (search.hv_ref_cost, search.hv_ref_error, search.hv_cost_floor)))
    return Reporter(state, [*search_writers(run_dir, config),
                            StatusLine(progress, total=lambda: search.max_trials)])


def search_writers(run_dir: Path, config: Config) -> list[Writer]:
    """pool.tsv, hypervolume.tsv, the frontier's TSVs, gallery/, TensorBoard, figures."""
    search = config.search
    return [PoolTable(run_dir), HypervolumeTable(run_dir), FrontierTables(run_dir),
            GalleryFolders(run_dir), TensorBoardWriter(run_dir),
            FigureWriter(run_dir, figures.search_figures(search.convex_hull_eps,
                                                         cost_column(config)),
                         search.plot_interval_s)]


def _search_header(config: Config, store: RunStore) -> str:
    """The first line. A resumed run counts what the status line counts: the trials
    that ended (its "10/24 trials"), and apart, those in flight at the stop, which run
    again under their ids (the journal holds both: 12 submitted)."""
    search = config.search
    done, again = len(store.rows), len(store.specs) - len(store.rows)
    resumed = (f", resumed with {done} trial{'s' * (done != 1)} done"
               + (f" and {again} to run again" if again else "")) if store.specs else ""
    return (f"search {store.dir}{resumed}: {search.max_trials} trials or "
            f"{format_duration(search.max_hours * 3600)}, strategy {search.strategy}, "
            f"{len(seed_macros(config))} seed shapes")


def budget_warnings(config: Config) -> list[str]:
    """Budgets that run but cannot do what a user expects of them."""
    seeds = len(seed_macros(config))
    if config.search.strategy != "random_search" and config.search.max_trials <= seeds:
        return [f"search.max_trials={config.search.max_trials} is not above the {seeds} "
                f"seed shapes of search.seeds: no model will be grown"]
    return []


def with_reference_point(config: Config) -> Config:
    """The config with its hypervolume box filled in where a key is 0 (derive): error at
    chance level (1 - 1/classes, the worst a model that learned anything beats), a cost
    ceiling ten times the costliest seed shape's (one decade of room to grow) and a cost
    floor at the cheapest seed shape's (growth only adds cost to the seeds, so the box
    starts where the search does; a cheaper model still scores, as if it cost the floor).
    Latency has no cost derivable from the config: its floor is hv_ref_cost / 100, two
    decades below the ceiling the user gave. Derived from the config alone, so every run
    of a config shares it."""
    search = config.search
    if search.hv_ref_cost and search.hv_ref_error and search.hv_cost_floor:
        return config
    from petrinas.data import dataset_info
    from petrinas.model_desc.builder import costliest_seed

    axis = cost_column(config)
    ref_error = search.hv_ref_error or 1.0 - 1.0 / dataset_info(config.dataset).num_classes
    ref_cost = search.hv_ref_cost or 10.0 * costliest_seed(config, axis)
    floor = search.hv_cost_floor or (ref_cost / 100 if axis == "latency_ms"
                                     else cheapest_seed(config, axis))
    if floor >= ref_cost:
        how = "" if search.hv_cost_floor else " (derived: the cheapest seed's cost)"
        raise InputError(f"search.hv_cost_floor: {floor:g}{how} is not below "
                         f"search.hv_ref_cost ({ref_cost:g}); set search.hv_cost_floor "
                         f"below it")
    return replace(config, search=replace(search, hv_ref_cost=float(ref_cost),
                                          hv_ref_error=float(ref_error),
                                          hv_cost_floor=float(floor)))


def check_data(config: Config) -> None:
    """Load the dataset once in the driver: a missing or malformed dataset is a one-line
    input error before anything is written, not a failure in every job."""
    from petrinas.data import load_splits
    load_splits(config.dataset, config.seed, keep_uint8=True)  # no float32 copy needed


def run_stage(config: Config, store: RunStore, strategy: Strategy, reporter: Reporter,
              request: Callable[[JobSpec], JobRequest], *, budget: Budget, dedup: bool,
              ray_options: RayOptions, progress: Progress, header: Callable[[], str],
              task=None) -> str:
    """Replay the journal into `strategy`, then run trials on Ray until it is finished.

    Ray is started (or joined) only when there is work left; its own log lines go to
    `logs/ray.log` in the run directory; `header` is printed through `progress` once
    there is (the status line is one of the reporter's writers). `task` replaces the
    training job: a Ray task with jobs.run_trial's signature (a stand-in, for benchmarks
    of the driver; or one that wraps run_trial, for a test). Returns the finish reason."""
    in_flight = store.replay(strategy)
    for trial_id in store.mark_lost(strategy):
        log.warning("%s: its files are gone; marked lost, the run goes on without it",
                    trial_id)
    reporter.start(store.rows.values())
    verdict = budget.verdict(trials=len(store.specs), pooled=store.pooled,
                             elapsed=store.elapsed(), compute=store.compute_s)
    if verdict.action is Action.STOP or (not in_flight and (
            verdict.action is Action.DRAIN or strategy.is_finished())):
        return verdict.reason or strategy.finish_reason()
    owners = claim_owners(store.rows.values()) if dedup else None
    with ray_session(ray_options, store.dir / "logs" / "ray.log"):
        executor = RayExecutor(config, owners, task=task)
        executor.check_capacity()
        progress.header(header())
        loop = TrialLoop(config, store, strategy, executor, reporter, request=request,
                         budget=budget)
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
