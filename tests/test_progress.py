"""The status line: live on a terminal, plain lines (one per result) otherwise; an ETA
that settles."""

import io

import pytest

from petrinas.report.progress import Progress, Status, eta, format_duration


def status(**changes) -> Status:
    values = dict(done=3, total=10, running=2, failed=0, duplicates=0, pool=3, frontier=2,
                  best_error=0.0125, elapsed=75.0, eta=175.0)
    return Status(**{**values, **changes})


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_line_names_done_of_total_and_what_is_going_on():
    assert status().line() == ("3/10 trials, 2 running, 0 failed | pool 3, frontier 2, "
                               "best val. error 1.25% | 01:15 elapsed, ETA 02:55")
    line = status(total=None, duplicates=1, eta=None, best_error=None,
                  note="waiting for capacity: the cluster has 0 CPUs").line()
    assert line == ("3 trials, 2 running, 0 failed, 1 duplicate | pool 3, frontier 2, "
                    "best val. error - | 01:15 elapsed | waiting for capacity: the cluster "
                    "has 0 CPUs")


def test_plain_lines_off_a_terminal_one_per_result():
    stream = io.StringIO()
    progress = Progress(stream=stream)
    progress.header("search runs/x: 10 trials or 1:00:00")
    progress.update(status())
    progress.update(status(running=1))   # a job started: no new line
    progress.update(status(failed=1))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in stream.getvalue()
    assert lines[0] == "search runs/x: 10 trials or 1:00:00"
    assert lines[1].startswith("3/10 trials, 2 running") and "1 failed" in lines[2]


def test_one_live_line_on_a_terminal():
    stream = Terminal()
    progress = Progress(stream=stream)
    progress.update(status())
    progress.update(status(done=4))
    progress.close()
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1


def test_disabled_progress_prints_nothing_but_warnings():
    stream = io.StringIO()
    progress = Progress(enabled=False, stream=stream)
    progress.header("search")
    progress.update(status())
    assert stream.getvalue() == ""
    progress.warn("search.max_trials=3 is not above the 16 seed shapes")
    assert stream.getvalue() == "warning: search.max_trials=3 is not above the 16 seed shapes\n"


def test_eta_is_the_remaining_waves_at_the_median_trial_time():
    # 7 trials left, 2 at a time: 4 waves of the median 30 s.
    assert eta(7, [10.0, 30.0, 50.0], parallel=2, time_left=1e9) == 120.0
    assert eta(7, [10.0, 30.0, 50.0], parallel=2, time_left=60.0) == 60.0  # time budget
    assert eta(0, [10.0], parallel=2, time_left=1e9) == 0.0
    assert eta(7, [], parallel=2, time_left=1e9) is None
    # One slow outlier does not move it (as elapsed / done would).
    assert eta(7, [10.0, 30.0, 50.0, 900.0, 30.0], 2, 1e9) == pytest.approx(120.0)


def test_durations_format():
    assert format_duration(59) == "00:59" and format_duration(3725) == "1:02:05"
