"""The eval stage: train every gallery model of a finished search from scratch, fully.

Each gallery model is rebuilt by the eval builder (more cells, wider) and trained for
`eval.train.epochs` as a Ray job, with the search's resources, retries and failure
handling, through the same store and loop as the search. Its run directory is DIR/eval/:
resumable the same way (the same command continues; a finished model is never retrained;
a model whose eval failed is tried again by the next run). Outputs:

    DIR/eval/pool.tsv, frontier.tsv        test error vs MACs of the eval models
    DIR/eval/frontier.{png,pdf}            with the search-stage frontier beside it
    DIR/eval/frontier.{md,tex}             tables for papers
    DIR/eval/<model>/                      desc.yaml, weights.pt, metrics.json (curves)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from petrinas.config import Config, load_config
from petrinas.errors import InputError
from petrinas.search.progress import Progress
from petrinas.search.report import (METRICS, frontier_ids, install_folder, plot_errors_logged,
                                    plot_frontier, write_tsv)
from petrinas.search.jobs import RayOptions
from petrinas.search.runner import JobRequest, logging_to, run_stage
from petrinas.search.store import RunStore, is_locked, read_rows, read_trial_desc
from petrinas.search.strategy import FINISHED, JobSpec, Suggestion
from petrinas.tables import write_frontier_tables

log = logging.getLogger("petrinas.eval")

EVAL = "eval"
# Changing these does not change what a finished eval trial means.
EVAL_RESUMABLE_KEYS = ("eval.max_models", "resources", "search.max_trials",
                       "search.max_hours", "search.plot_interval_s")


class EvalStrategy:
    """One eval trial per model, cheapest first. A model whose eval failed in an earlier
    session is tried once more per session; its failed trial stays in the record."""

    def __init__(self, models: Sequence[str]):
        self.models = list(models)
        self.in_flight: dict[str, JobSpec] = {}
        self.done: dict[str, str] = {}      # model -> eval trial id
        self.failed = 0
        self.submitted = 0
        self.stop_reason: str | None = None
        self._tried_now: set[str] = set()   # this session only: not part of the state

    def suggest(self, trial_id: str) -> Suggestion:
        if self.is_finished():
            return FINISHED
        busy = {spec.parent_id for spec in self.in_flight.values()}
        for model in self.models:
            if model not in self.done and model not in busy and model not in self._tried_now:
                spec = JobSpec(stage=EVAL, parent_id=model)
                self.in_flight[trial_id] = spec
                self._tried_now.add(model)
                self.submitted += 1
                return spec
        return None

    def restore_submission(self, trial_id: str, spec: JobSpec, rng_state: dict) -> None:
        self.in_flight[trial_id] = spec
        self.submitted += 1

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: str | None = None) -> None:
        spec = self.in_flight.pop(trial_id)
        if error is not None or result is None:
            self.failed += 1
        else:
            self.done[spec.parent_id] = trial_id

    def on_trial_cancelled(self, trial_id: str) -> None:
        self.in_flight.pop(trial_id, None)

    def is_finished(self) -> bool:
        return not self.in_flight and all(m in self.done or m in self._tried_now
                                          for m in self.models)

    def finish_reason(self) -> str:
        left = [m for m in self.models if m not in self.done]
        return "every model trained" if not left else f"failed: {', '.join(left)}"

    def rng_state(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {"in_flight": {t: s.to_dict() for t, s in self.in_flight.items()},
                "done": dict(self.done), "failed": self.failed, "submitted": self.submitted}

    def load_state_dict(self, state: dict) -> None:
        self.in_flight = {t: JobSpec.from_dict(s) for t, s in state["in_flight"].items()}
        self.done = dict(state["done"])
        self.failed = state["failed"]
        self.submitted = state["submitted"]


@dataclass
class EvalSummary:
    eval_dir: Path
    models: int
    trained: int
    failed: int
    frontier: int
    best_test_error: float | None
    finish_reason: str


def gallery_models(search_rows: list[dict], eps: float, max_models: int) -> list[str]:
    """The models to evaluate: the whole ε-band, or with a cap, hull models first,
    spread evenly along the hull (its cheapest and its most accurate always in)."""
    hull_ids, band_ids = frontier_ids(search_rows, eps)
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


class EvalReporter:
    """Keeps DIR/eval's tables, model folders and plots in step with the results."""

    def __init__(self, eval_dir: Path, search_rows: list[dict], eps: float,
                 plot_interval_s: float):
        self.dir = eval_dir
        self.search_rows = search_rows
        self.eps = eps
        self.plot_interval_s = plot_interval_s
        self._last_plot: float | None = None

    def refresh(self, rows: list[dict], *, final: bool = False) -> dict:
        by_id = {r["trial_id"]: r for r in rows}
        hull_ids, _ = frontier_ids(rows, self.eps, metric="test_top1")
        frontier_rows = [by_id[t] for t in hull_ids]
        write_tsv(self.dir / "pool.tsv", rows)
        write_tsv(self.dir / "frontier.tsv", frontier_rows)
        write_frontier_tables(self.dir, [_named(r) for r in frontier_rows])
        for row in rows:
            if row.get("status") == "ok":
                self._install_model(row)
        ok = [r for r in rows if r.get("status") == "ok"]
        if ok and (final or self._last_plot is None
                   or time.monotonic() - self._last_plot >= self.plot_interval_s):
            self._plot(rows)
        errors = [1.0 - float(r["test_top1"]) for r in ok]
        return {"pool": len(ok), "failed": len(rows) - len(ok), "frontier": len(hull_ids),
                "best_error": min(errors) if errors else None}

    def _install_model(self, row: dict) -> None:
        source = self.dir / "trials" / row["trial_id"]
        metrics = (source / METRICS).read_bytes()
        install_folder(self.dir, row["parent_id"], source, metrics)

    def _plot(self, rows: list[dict]) -> None:
        search_hull, _ = frontier_ids(self.search_rows, self.eps)
        reference = [r for r in self.search_rows if r["trial_id"] in search_hull]
        with plot_errors_logged():
            plot_frontier(self.dir / "frontier", rows, self.eps, metric="test_top1",
                          title=f"Eval: {sum(r.get('status') == 'ok' for r in rows)} models",
                          reference_rows=reference, reference_label="search frontier")
        self._last_plot = time.monotonic()


def _named(row: dict) -> dict:
    """Tables name a model by its gallery name (the search trial it came from)."""
    return {**row, "trial_id": row.get("parent_id") or row["trial_id"]}


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
                            config.eval.max_models)
    if not models:
        raise InputError(f"--run {run_dir}: the search has no trained models to evaluate")
    store = RunStore.open(run_dir / EVAL, config, resumable_keys=EVAL_RESUMABLE_KEYS,
                          id_prefix="e")
    with logging_to(store.dir / "logs" / "eval.log"):
        try:
            strategy = EvalStrategy(models)
            reporter = EvalReporter(store.dir, search_rows, config.search.convex_hull_eps,
                                    config.search.plot_interval_s)

            def request(spec: JobSpec) -> JobRequest:
                return JobRequest(EVAL, read_trial_desc(run_dir, spec.parent_id))

            reason = run_stage(config, store, strategy, reporter.refresh, request,
                               max_seconds=float("inf"), max_trials=len(models),
                               ray_options=RayOptions(address, verbose), progress=progress)
            summary = reporter.refresh(list(store.rows.values()), final=True)
            log.info("eval finished (%s)", reason)
            if progress is not None and progress.enabled:
                _print_summary(store.dir, summary, reason)
            return EvalSummary(eval_dir=store.dir, models=len(models),
                               trained=summary["pool"], failed=summary["failed"],
                               frontier=summary["frontier"],
                               best_test_error=summary["best_error"], finish_reason=reason)
        except InputError:
            store.discard_if_empty()
            raise
        finally:
            store.close()


def _print_summary(eval_dir: Path, summary: dict, reason: str) -> None:
    best = summary["best_error"]
    best_text = f"{best * 100:.2f}%" if best is not None else "-"
    print(f"eval finished ({reason}): {summary['pool']} models trained, "
          f"{summary['failed']} failed, frontier {summary['frontier']}, best test error "
          f"{best_text}; outputs in {eval_dir}")


__all__ = ["run_eval", "EvalStrategy", "EvalSummary", "gallery_models"]
