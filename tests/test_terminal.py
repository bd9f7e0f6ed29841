"""The terminal belongs to petrinas: Ray's own log lines (its Python loggers, its C++
core, the processes it spawns) go to DIR/logs/ray.log, unless --verbose asks for them.
Checked through the real script, since Ray's C++ core writes to file descriptor 2."""

import re
import subprocess
import sys

from support import REPO, TINY

SEARCH = [sys.executable, str(REPO / "scripts" / "search.py"), "--set", *TINY]
PROGRESS = re.compile(r"trials \d+ done, \d+ running, \d+ failed \| pool \d+, frontier \d+, "
                      r"best error (-|\d+\.\d\d%) \| \d\d:\d\d elapsed(, ETA \d\d:\d\d)?")
FINISHED = re.compile(r"search finished \(max_trials\): 3 trials, 0 failed, pool 3, "
                      r"frontier \d+, best val error \d+\.\d\d%; outputs in .+")


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SEARCH, *args], capture_output=True, text=True, timeout=300)


def test_a_search_prints_only_its_own_lines(tmp_path):
    out = tmp_path / "run"
    done = run("search.max_trials=3", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert FINISHED.fullmatch(done.stdout.strip()), done.stdout
    lines = done.stderr.splitlines()
    assert lines and all(PROGRESS.fullmatch(line) for line in lines), done.stderr
    # Ray did talk, to the log file.
    assert "Started a local Ray instance" in (out / "logs" / "ray.log").read_text()


def test_an_input_error_after_ray_started_is_the_only_line(tmp_path):
    done = run("resources.gpus_per_job=64", "--out", str(tmp_path / "run"))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("error: resources.gpus_per_job=64")
    assert done.stderr.count("\n") == 1, done.stderr


def test_verbose_shows_rays_lines_too(tmp_path):
    done = run("resources.gpus_per_job=64", "--out", str(tmp_path / "run"), "--verbose")
    assert done.returncode == 2
    assert "Started a local Ray instance" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("error: resources.gpus_per_job=64")
