"""The status line: live on a terminal, plain lines (one per result) otherwise."""

import io

from petrinas.search.progress import Progress, eta, format_duration

COMMON = dict(pool=3, frontier=2, best_error=0.0125, elapsed=75.0, max_trials=10,
              max_seconds=3600.0)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_off_a_terminal_one_per_result():
    stream = io.StringIO()
    progress = Progress(stream=stream)
    progress.update(done=3, running=2, failed=0, **COMMON)
    progress.update(done=3, running=1, failed=0, **COMMON)  # a job started: no new line
    progress.update(done=3, running=1, failed=1, **COMMON)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in stream.getvalue()
    assert lines[0] == ("trials 3 done, 2 running, 0 failed | pool 3, frontier 2, "
                        "best error 1.25% | 01:15 elapsed, ETA 02:55")
    assert "1 failed" in lines[1]


def test_one_live_line_on_a_terminal():
    stream = Terminal()
    progress = Progress(stream=stream)
    progress.update(done=3, running=2, failed=0, **COMMON)
    progress.update(done=4, running=2, failed=0, **COMMON)
    progress.close()
    text = stream.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1


def test_disabled_progress_prints_nothing():
    stream = io.StringIO()
    Progress(enabled=False, stream=stream).update(done=1, running=0, failed=0, **COMMON)
    assert stream.getvalue() == ""


def test_eta_takes_the_sooner_budget_and_durations_format():
    assert eta(done=5, max_trials=10, elapsed=50, max_seconds=1000) == 50
    assert eta(done=5, max_trials=10, elapsed=50, max_seconds=60) == 10
    assert format_duration(59) == "00:59" and format_duration(3725) == "1:02:05"
