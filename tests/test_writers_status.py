"""The status line writer: its counts from the state, the loop's facts from its ticks,
the ETA from the compute of the trials this session saw end, and the screen released
when the loop ends. Expected lines are spelled out here, not formatted by the code
under test."""

from __future__ import annotations

import io
import math

from petrinas.report.progress import Progress
from petrinas.report.reporter import LoopStatus
from petrinas.report.state import ReportState
from petrinas.report.writers import StatusLine
from test_report import _example_rows, _failed, _row

# test_report's example: 7 rows, A B C D E G pooled, F failed; the hull A B D, its best
# D (val .90: error 10 %).


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def tick(running: int = 2, elapsed: float = 75.0, time_left: float = math.inf,
         waiting: str = "", draining: str = "") -> LoopStatus:
    return LoopStatus(running=running, waiting=waiting, draining=draining,
                      elapsed=elapsed, time_left=time_left)


def started(rows: list[dict], total: int | None, stream: io.StringIO | None = None
            ) -> tuple[StatusLine, ReportState, io.StringIO]:
    stream = stream if stream is not None else io.StringIO()
    state = ReportState(0.1)
    for row in rows:
        state.ingest(row)
    line = StatusLine(Progress(stream=stream), total=lambda: total)
    line.on_start(state)
    return line, state, stream


def arrive(line: StatusLine, state: ReportState, row: dict) -> None:
    state.ingest(row)
    line.on_result(row, state)


def test_the_line_counts_the_state_and_says_what_the_loop_does():
    duplicate = _row("t0007", 100_000_000, 0.70, status="duplicate", duplicate_of="t0000")
    line, state, stream = started(_example_rows() + [duplicate], total=20)
    line.on_tick(tick(), state)
    assert stream.getvalue() == ("8/20 trials, 2 running, 1 failed, 1 duplicate | pool 6, "
                                 "frontier 3, best val. error 10.00% | 01:15 elapsed\n")
    line.on_tick(tick(running=0, draining="max_trials"), state)
    line.on_tick(tick(running=0, draining="max_trials", waiting="waiting for capacity: "
                      "the cluster has 0 CPUs"), state)   # what blocks wins
    assert stream.getvalue().splitlines()[1:] == [
        "8/20 trials, 0 running, 1 failed, 1 duplicate | pool 6, frontier 3, best val. "
        "error 10.00% | 01:15 elapsed | draining (max_trials reached)",
        "8/20 trials, 0 running, 1 failed, 1 duplicate | pool 6, frontier 3, best val. "
        "error 10.00% | 01:15 elapsed | waiting for capacity: the cluster has 0 CPUs"]


def test_no_trial_budget_no_total_and_no_eta():
    line, state, stream = started([_row("t0000", 100_000_000, 0.75, stage="seed")], None)
    line.on_tick(tick(running=1), state)
    arrive(line, state, _row("t0001", 200_000_000, 0.80, compute_s=30.0))
    line.on_tick(tick(running=1, elapsed=3725.0), state)
    assert stream.getvalue().splitlines() == [
        "1 trials, 1 running, 0 failed | pool 1, frontier 1, best val. error 25.00% "
        "| 01:15 elapsed",
        "2 trials, 1 running, 0 failed | pool 2, frontier 2, best val. error 20.00% "
        "| 1:02:05 elapsed"]


def test_the_total_is_asked_at_the_start_after_the_replay():
    models: list[str] = []
    line = StatusLine(Progress(stream=io.StringIO()), total=lambda: len(models))
    models += ["t0001", "t0003"]          # what the replay leaves to train
    line.on_start(ReportState(0.1))
    assert line.total == 2


def test_the_eta_is_paced_by_the_trials_this_session_saw_end():
    """10 trials; 2 seeds in the history and one result adopted at resume (before the
    first tick), then ok 10 s, failed 900 s, duplicate 20 s, ok 50 s: 7 done, 3 left, 2
    at a time, 2 waves of the median 20 s of [10, 20, 50]."""
    seeds = [_row("t0000", 100_000_000, 0.70, stage="seed"),
             _row("t0001", 200_000_000, 0.80, stage="seed")]       # 1.5 s each
    line, state, stream = started(seeds, total=10, stream=Terminal())
    arrive(line, state, _row("t0002", 300_000_000, 0.82, compute_s=700.0))  # adopted
    line.on_tick(tick(), state)
    for row in (_row("t0003", 400_000_000, 0.90, compute_s=10.0),
                {**_failed("t0004"), "compute_s": 900.0},
                _row("t0005", 100_000_000, 0.70, status="duplicate", duplicate_of="t0000",
                     compute_s=20.0),
                _row("t0006", 500_000_000, 0.89, compute_s=50.0)):
        arrive(line, state, row)
    line.on_tick(tick(elapsed=600.0), state)
    line.on_tick(tick(elapsed=600.0, time_left=25.0), state)  # the time budget caps it
    line.on_tick(tick(running=5, elapsed=600.0), state)       # 3 at once: one wave
    counts = "7/10 trials, {} running, 1 failed, 1 duplicate | pool 5, frontier 3, best " \
             "val. error 10.00% | 10:00 elapsed, ETA {}"
    assert live_lines(stream) == [
        "3/10 trials, 2 running, 0 failed | pool 3, frontier 3, best val. error 18.00% "
        "| 01:15 elapsed",
        counts.format(2, "00:40"), counts.format(2, "00:25"), counts.format(5, "00:20")]


def test_a_new_stage_on_the_same_screen_starts_without_an_eta():
    """The eval after the search, in one command: the search's trials do not pace it."""
    line, state, stream = started([], total=4)
    line.on_tick(tick(running=1), state)
    arrive(line, state, _row("t0000", 100_000_000, 0.70, stage="seed", compute_s=30.0))
    line.on_tick(tick(running=1), state)
    assert stream.getvalue().splitlines()[-1].endswith(", ETA 01:30")
    evals = StatusLine(line.progress, total=lambda: 2)
    evals.on_start(ReportState(0.1))
    evals.on_tick(tick(running=2), ReportState(0.1))
    assert stream.getvalue().splitlines()[-1] == (
        "0/2 trials, 2 running, 0 failed | pool 0, frontier 0, best val. error - "
        "| 01:15 elapsed")
    line.on_start(state)      # started again (a resumed run): paced afresh too
    line.on_tick(tick(running=1), state)
    assert stream.getvalue().splitlines()[-1].endswith("| 01:15 elapsed")


def test_the_live_line_is_released_when_the_loop_ends_and_at_the_finish():
    line, state, stream = started([], total=4, stream=Terminal())
    line.on_tick(tick(running=1), state)
    assert stream.getvalue() == ("\r0/4 trials, 1 running, 0 failed | pool 0, frontier 0, "
                                 "best val. error - | 01:15 elapsed")
    line.on_loop_end()        # Ctrl-C, say: what is printed next starts its own line
    assert stream.getvalue().endswith("elapsed\n")
    line.on_finish(state)     # released once, not twice
    assert stream.getvalue().count("\n") == 1

    line, state, stream = started([], total=4, stream=Terminal())
    line.on_tick(tick(running=1), state)
    line.on_finish(state)     # the finish alone releases it as well
    assert stream.getvalue().endswith("elapsed\n")


def live_lines(stream: io.StringIO) -> list[str]:
    """Each state of a live line (each rewrite starts with a carriage return and is
    padded to cover the one before)."""
    return [text.rstrip() for text in stream.getvalue().split("\r")[1:]]


def test_a_resumed_runs_header_counts_what_its_status_line_counts(tmp_path):
    """After a stop with 3 trials submitted, 1 ended: the header says 1 done and 2 to
    run again, and the first status line 1/10. Fails if the header counts the journal's
    submissions ("resumed at 3 trials") against the status line's ended trials."""
    from petrinas.config_loader import load_config
    from petrinas.engine.runner import _search_header, search_reporter, with_reference_point
    from petrinas.engine.store import RunStore
    from petrinas.search.strategy import strategy_from_config

    config = with_reference_point(load_config("petridish_digits", ["search.max_trials=10"]))
    store = RunStore.open(tmp_path / "run", config)
    strategy = strategy_from_config(config)
    for _ in range(3):
        trial_id = store.next_trial_id()
        store.record_submit(trial_id, strategy.suggest(trial_id), strategy.rng_state())
    store.record_failure("t0001", "TrainingError: loss became nan")
    store.close()

    store = RunStore.open(tmp_path / "run", config)
    store.replay(strategy_from_config(config))
    stream = io.StringIO()
    reporter = search_reporter(store.dir, config, Progress(stream=stream))
    reporter.start(store.rows.values())
    reporter.tick(tick(running=2))
    reporter.close()
    store.close()
    assert _search_header(config, store).startswith(
        f"search {store.dir}, resumed with 1 trial done and 2 to run again: 10 trials or ")
    assert stream.getvalue().startswith("1/10 trials, 2 running, 1 failed | ")
