"""The eval stage: train every gallery model of a finished search from scratch, fully.

Each gallery model is rebuilt by the eval builder (more cells, wider) and trained for
`eval.train.epochs` as a Ray job, with the search's resources, retries and failure
handling, through the same store and loop as the search; its reports are its own writers
(`eval_reporter`). Its run directory is DIR/eval/: resumable the same way (the same
command continues; a finished model is never retrained; a model whose eval failed is
tried again by the next run). Outputs:

    DIR/eval/pool.tsv, frontier.tsv        the eval models; the frontier is selected on
                                           validation error (test error is reported)
    DIR/eval/frontier.{png,pdf}            test error vs MACs of that frontier, the
                                           search frontier beside
    DIR/eval/frontier.{md,tex}             tables for papers: both errors
    DIR/eval/trials/<eval id>/             desc.yaml, weights.pt, metrics.json (curves),
                                           each model once; pool.tsv's parent_id names
                                           the gallery model it was built from

The best model is chosen like the frontier, on validation error (the frontier's last
row); its test error is what the summary reports, never the least test error, which
would pick a model by the test set.
"""

from __future__ import annotations

import logging
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from overrides import overrides

from petrinas.config import Config, Role, cost_column, keys_with
from petrinas.config_loader import load_config
from petrinas.errors import InputError
from petrinas.report import figures
from petrinas.engine.jobs import RayOptions
from petrinas.report.progress import Progress
from petrinas.report.frontier import frontier_ids
from petrinas.report.reporter import Reporter
from petrinas.report.state import ReportState
from petrinas.report.writers import FigureWriter, FrontierDocuments, FrontierTables, \
    PoolTable, StatusLine, TensorBoardWriter
from petrinas.engine.runner import JobRequests, logging_to, run_stage
from petrinas.search.stopping import Budget
from petrinas.engine.store import RunStore, is_locked, read_rows
from petrinas.search.strategy import EVAL, FINISHED, JobSpec, Strategy, Suggestion

log = logging.getLogger("petrinas.eval")

# Changing these does not change what a finished eval trial means (each key declares
# it in config.py).
EVAL_RESUMABLE_KEYS = keys_with(Role.EVAL_RESUMABLE)


class EvalStrategy(Strategy):
    """One eval trial per model, cheapest first. A model whose eval failed in an earlier
    session is tried once more per session; its failed trial stays in the record."""

    def __init__(self, models: Sequence[str]):
        self.models = list(models)
        self._in_flight: dict[str, JobSpec] = {}
        self.done: dict[str, str] = {}      # model -> eval trial id
        self.failed = 0
        self._tried_now: set[str] = set()   # this session only: not part of the state

    @overrides
    def suggest(self, trial_id: str) -> Suggestion:
        if self.is_finished():
            return FINISHED
        busy = {spec.parent_id for spec in self._in_flight.values()}
        for model in self.models:
            if model not in self.done and model not in busy and model not in self._tried_now:
                spec = JobSpec(stage=EVAL, parent_id=model)
                self._in_flight[trial_id] = spec
                self._tried_now.add(model)
                return spec
        return None

    @overrides
    def restore_submission(self, trial_id: str, spec: JobSpec, rng_state: dict) -> None:
        self._in_flight[trial_id] = spec

    @overrides
    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: str | None = None) -> None:
        spec = self._in_flight.pop(trial_id)
        if error is not None or result is None:
            self.failed += 1
        else:
            self.done[spec.parent_id] = trial_id

    @overrides
    def on_trial_cancelled(self, trial_id: str) -> None:
        self._in_flight.pop(trial_id, None)

    @overrides
    def on_trial_lost(self, trial_id: str) -> None:
        self.done = {m: t for m, t in self.done.items() if t != trial_id}  # eval it again

    @property
    @overrides
    def in_flight(self) -> dict[str, JobSpec]:
        return self._in_flight

    @overrides
    def is_finished(self) -> bool:
        return not self._in_flight and all(m in self.done or m in self._tried_now
                                           for m in self.models)

    @overrides
    def finish_reason(self) -> str:
        left = [m for m in self.models if m not in self.done]
        return "every model trained" if not left else f"failed: {', '.join(left)}"

    @overrides
    def rng_state(self) -> dict:
        return {}

    @overrides
    def state_dict(self) -> dict[str, Any]:
        return {"in_flight": {t: s.to_dict() for t, s in self._in_flight.items()},
                "done": dict(self.done), "failed": self.failed}

    @overrides
    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._in_flight = {t: JobSpec.from_dict(s) for t, s in state["in_flight"].items()}
        self.done = dict(state["done"])
        self.failed = state["failed"]


@dataclass
class EvalSummary:
    eval_dir: Path
    models: int
    trained: int
    failed: int
    frontier: int
    best_test_error: float | None   # of the best model on validation error, not the least
    best_model: str | None          # that model's gallery id
    finish_reason: str


def gallery_models(search_rows: list[dict], eps: float, max_models: int,
                   cost_key: str = "macs") -> list[str]:
    """The models to evaluate: the whole ε-band, or with a cap, hull models first,
    spread evenly along the hull (its cheapest and its most accurate always in), then
    the cheapest of the band's other members."""
    hull_ids, band_ids = frontier_ids(search_rows, eps, cost_key=cost_key)
    if not max_models or max_models >= len(band_ids):
        return band_ids
    if max_models >= len(hull_ids):
        rest = [t for t in band_ids if t not in hull_ids]
        chosen = set(hull_ids + rest[:max_models - len(hull_ids)])
    elif max_models == 1:
        chosen = {hull_ids[-1]}
    else:
        step = (len(hull_ids) - 1) / (max_models - 1)
        chosen = {hull_ids[round(i * step)] for i in range(max_models)}
    return [t for t in band_ids if t in chosen]  # cheapest first


def left_out(search_rows: list[dict], models: Sequence[str], config: Config) -> str:
    """'' when every gallery model is evaluated, else what eval.max_models left out."""
    _, band = frontier_ids(search_rows, config.search.convex_hull_eps,
                           cost_key=cost_column(config))
    dropped = [t for t in band if t not in models]
    if not dropped:
        return ""
    return (f"eval.max_models={config.eval.max_models} keeps {len(models)} of the "
            f"{len(band)} gallery models: the hull's ends, then models spread along it, "
            f"then the cheapest others; left out: {', '.join(dropped)}")


def eval_reporter(eval_dir: Path, config: Config, search_rows: list[dict],
                  progress: Progress, total: Callable[[], int]) -> Reporter:
    """The eval stage's reports: tables with both errors, and the test-error frontier
    beside the search's. No model folders: each model is stored once, in trials/; no
    hypervolume. Its status line counts trials against `total` (see StatusLine)."""
    eps, axis = config.search.convex_hull_eps, cost_column(config)
    search_hull, _ = frontier_ids(search_rows, eps, cost_key=axis)
    reference = [r for r in search_rows if r["trial_id"] in search_hull]
    return Reporter(ReportState(eps, axis), [
        PoolTable(eval_dir), FrontierTables(eval_dir), FrontierDocuments(eval_dir, axis),
        TensorBoardWriter(eval_dir),
        FigureWriter(eval_dir, figures.eval_figures(eps, axis, reference),
                     config.search.plot_interval_s),
        StatusLine(progress, total)])


def load_search(run_dir: Path, overrides: Sequence[str] = ()) -> tuple[Config, list[dict]]:
    """The configuration and the pool rows of a finished search in `run_dir`."""
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise InputError(f"--run {run_dir}: no search run there (config.yaml missing)")
    if is_locked(run_dir):
        raise InputError(f"--run {run_dir}: the search is still running; eval its gallery "
                         "once it has finished")
    return load_config(config_path, overrides), read_rows(run_dir)


def run_eval(run_dir: str | Path, *, overrides: Sequence[str] = (),
             address: str | None = None, progress: Progress | None = None,
             verbose: bool = False) -> EvalSummary:
    """Train the gallery of the search in `run_dir` (or resume doing so)."""
    run_dir = Path(run_dir)
    config, search_rows = load_search(run_dir, overrides)
    models = gallery_models(search_rows, config.search.convex_hull_eps,
                            config.eval.max_models, cost_column(config))
    if not models:
        raise InputError(f"--run {run_dir}: the search has no trained models to evaluate")
    dropped = left_out(search_rows, models, config)
    ray_options = RayOptions(address, verbose)
    ray_options.check_reachable()   # a wrong address: one line, and no eval/ folder
    store = RunStore.open(run_dir / EVAL, config, resumable_keys=EVAL_RESUMABLE_KEYS,
                          id_prefix="e", budgets=False)
    with logging_to(store.dir / "logs" / "eval.log"):
        try:
            if dropped:
                log.info("%s", dropped)
            strategy = EvalStrategy(models)

            def left() -> list[str]:  # after the replay: the models still to train
                return [m for m in models if m not in strategy.done]

            progress = progress or Progress(enabled=False)
            reporter = eval_reporter(store.dir, config, search_rows, progress,
                                     total=lambda: len(store.rows) + len(left()))
            with closing(reporter):   # however it ends: no figure thread outlives it
                reason = run_stage(config, store, strategy, reporter, JobRequests(run_dir),
                                   budget=Budget(max_trials=sys.maxsize), dedup=False,
                                   ray_options=ray_options, progress=progress,
                                   header=lambda: f"eval {store.dir}: {len(left())} of "
                                                  f"{len(models)} models to train"
                                                  + (f"; {dropped}" if dropped else ""))
                summary = reporter.finish()
            best = best_eval_row(list(store.rows.values()), config.search.convex_hull_eps,
                                 cost_column(config))
            log.info("eval finished (%s)%s", reason, f"; {_best_text(best)}" if best else "")
            if progress.enabled:
                _print_summary(store.dir, summary, best, reason)
            return EvalSummary(eval_dir=store.dir, models=len(models),
                               trained=summary["pool"], failed=summary["failed"],
                               frontier=summary["frontier"],
                               best_test_error=_test_error(best),
                               best_model=best["parent_id"] if best else None,
                               finish_reason=reason)
        except InputError:
            store.discard_if_empty()
            raise
        finally:
            store.close()


def best_eval_row(rows: list[dict], eps: float, cost_key: str) -> dict | None:
    """The best eval model: the last (most accurate) row of the frontier, which is chosen
    on validation error by the function that writes frontier.tsv and frontier.md."""
    hull_ids, _ = frontier_ids(rows, eps, cost_key=cost_key)
    return next(r for r in rows if r["trial_id"] == hull_ids[-1]) if hull_ids else None


def _test_error(row: dict | None) -> float | None:
    return None if row is None or row.get("test_top1") is None else 1.0 - float(row["test_top1"])


def _best_text(row: dict) -> str:
    """The best model as frontier.md's last row shows it."""
    test = _test_error(row)
    return (f"best (lowest val. error) {row['parent_id']} ({row['trial_id']}): val. error "
            f"{(1.0 - float(row['val_top1'])) * 100:.2f}%, test error "
            + (f"{test * 100:.2f}%" if test is not None else "-"))


def _print_summary(eval_dir: Path, summary: dict, best: dict | None, reason: str) -> None:
    print(f"eval finished ({reason}): {summary['pool']} models trained, "
          f"{summary['failed']} failed, frontier {summary['frontier']}, "
          f"{_best_text(best) if best else 'no model trained'}; outputs in {eval_dir}")


__all__ = ["run_eval", "EvalStrategy", "EvalSummary", "gallery_models", "best_eval_row"]
