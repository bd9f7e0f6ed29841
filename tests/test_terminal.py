"""The terminal belongs to petrinas: Ray's own log lines (its Python loggers, its C++
core, the processes it spawns) go to DIR/logs/ray.log, unless --verbose asks for them.
Checked through the real script, since Ray's C++ core writes to file descriptor 2."""

import _thread
import io
import re
import signal
import subprocess
import sys
import threading

import pytest

from petrinas.cli import search_main
from support import REPO, TINY, interruptible

SEARCH = [*interruptible(REPO / "scripts" / "search.py"), "--set", *TINY]
HEADER = re.compile(r"search \S+/run: 3 trials or 1:00:00, strategy petridish, 2 seed shapes")
PROGRESS = re.compile(r"\d/3 trials, \d running, 0 failed(, \d duplicates?)? \| pool \d, "
                      r"frontier \d, best val\. error (-|\d+\.\d\d%) \| \d\d:\d\d elapsed"
                      r"(, ETA \d\d:\d\d)?( \| draining \(max_trials reached\))?")
FINISHED = re.compile(r"search finished \(max_trials\): 3 trials, 0 failed, \d duplicates?, "
                      r"pool \d, frontier \d+, best val error \d+\.\d\d%; outputs in .+")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SEARCH, *args], capture_output=True, text=True, timeout=300)


def test_a_search_prints_only_its_own_lines(tmp_path):
    out = tmp_path / "run"
    done = run("search.max_trials=3", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert FINISHED.fullmatch(done.stdout.strip()), done.stdout
    lines = done.stderr.splitlines()
    assert HEADER.fullmatch(lines[0]), lines[0]
    assert len(lines) > 1 and all(PROGRESS.fullmatch(line) for line in lines[1:]), done.stderr
    # Ray did talk, to the log file.
    assert "Started a local Ray instance" in (out / "logs" / "ray.log").read_text()


@pytest.mark.own_ray
def test_verbose_shows_rays_lines_too(tmp_path, capfd):
    """In-process (capfd sees descriptor 2 as the terminal would), on a Ray instance
    of its own (own_ray: the suite's shared one is stopped first)."""
    code = search_main(["--set", *TINY, "resources.gpus_per_job=64", "--out",
                        str(tmp_path / "run"), "--verbose"])
    err = capfd.readouterr().err
    assert code == 2
    assert "Started a local Ray instance" in err
    assert err.splitlines()[-1].startswith("error: resources.gpus_per_job=64")


@pytest.mark.usefixtures("shared_ray")
def test_the_status_line_counts_the_refilled_slots_and_ctrl_c_is_logged(tmp_path,
                                                                        monkeypatch):
    """One real search (search.py's main, in this process on the suite's Ray instance),
    interrupted as Ctrl-C does (KeyboardInterrupt in the main thread) once a status line
    follows a result. Fails if that line counts 1 running, not the 2 with the job
    submitted in the finished one's place, or if Ctrl-C is not written to search.log
    naming the trials it stopped and how they resume."""
    out = tmp_path / "run"
    printed = io.StringIO()            # sys.stderr without a descriptor: Progress's stream
    monkeypatch.setattr(sys, "stderr", printed)
    stop = threading.Event()

    def ctrl_c_after_a_result() -> None:
        while not _after_a_result(printed.getvalue()):
            if stop.wait(0.02):
                return
        _thread.interrupt_main()

    # interrupt_main does nothing where SIGINT is ignored (pytest as a background job)
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    watcher = threading.Thread(target=ctrl_c_after_a_result, name="test-watcher")
    watcher.start()
    try:
        code = search_main(["--set", *TINY, "search.max_trials=8",
                            "resources.max_concurrent=2", "--out", str(out)])
    finally:
        stop.set()
        watcher.join()
        signal.signal(signal.SIGINT, handler)
    assert code == 130, printed.getvalue()[-2000:]
    first = _after_a_result(printed.getvalue())
    assert first and ", 2 running," in first, printed.getvalue()
    log = (out / "logs" / "search.log").read_text()
    assert re.search(r"WARNING petrinas\.search: interrupted \(Ctrl-C\): stopped [12] "
                     r"running trials? \(t\d{4}(, t\d{4})?\); they stay in flight in the "
                     r"journal and are trained again under their ids", log), log[-2000:]


def _after_a_result(stderr: str) -> str | None:
    """The first status line printed after a trial ended, if any yet."""
    return next((line for line in stderr.splitlines()
                 if re.match(r"[1-9]\d*/8 trials, ", line)), None)
