"""The terminal belongs to petrinas: Ray's own log lines (its Python loggers, its C++
core, the processes it spawns) go to DIR/logs/ray.log, unless --verbose asks for them.
Checked through the real script, since Ray's C++ core writes to file descriptor 2."""

import os
import re
import signal
import subprocess
import sys
import time

from petrinas.cli import search_main
from support import REPO, TINY, interruptible, stop_ray

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


def test_verbose_shows_rays_lines_too(tmp_path, capfd):
    """In-process (capfd sees descriptor 2 as the terminal would), on a Ray instance
    of its own: the suite's shared one is stopped first, if it is up."""
    stop_ray()
    code = search_main(["--set", *TINY, "resources.gpus_per_job=64", "--out",
                        str(tmp_path / "run"), "--verbose"])
    err = capfd.readouterr().err
    assert code == 2
    assert "Started a local Ray instance" in err
    assert err.splitlines()[-1].startswith("error: resources.gpus_per_job=64")


def test_the_status_line_counts_the_refilled_slots_and_ctrl_c_is_logged(tmp_path):
    """One real search, interrupted: each line after a result counts the job submitted
    in its place (2 running, not 1), and Ctrl-C is written to search.log, naming the
    trials it stopped and how they resume."""
    out = tmp_path / "run"
    err = tmp_path / "stderr.txt"
    with open(err, "w") as stderr:
        proc = subprocess.Popen([*SEARCH, "search.max_trials=8", "resources.max_concurrent=2",
                                 "--out", str(out)], stdout=subprocess.DEVNULL,
                                stderr=stderr, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not _after_a_result(err.read_text()):
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)   # what Ctrl-C sends the driver
        assert proc.wait(timeout=120) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    first = _after_a_result(err.read_text())
    assert first and ", 2 running," in first, err.read_text()
    log = (out / "logs" / "search.log").read_text()
    assert re.search(r"WARNING petrinas\.search: interrupted \(Ctrl-C\): stopped [12] "
                     r"running trials? \(t\d{4}(, t\d{4})?\); they stay in flight in the "
                     r"journal and are trained again under their ids", log), log[-2000:]


def _after_a_result(stderr: str) -> str | None:
    """The first status line printed after a trial ended, if any yet."""
    return next((line for line in stderr.splitlines()
                 if re.match(r"[1-9]\d*/8 trials, ", line)), None)
