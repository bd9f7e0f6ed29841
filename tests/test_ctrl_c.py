"""Ctrl-C at any moment: exit 130 with one line, and the same command resumes.

A search is interrupted (SIGINT, what Ctrl-C sends) at moments chosen by events, never
by the clock: while its seeds train, while its figures are being drawn (at the start of a
resumed run and after a result: `search.plot_interval_s=0` draws after every result) and
while grown children train; each time resumed by the same command, and finally run to
the end. Once, a search ended in `Aborted` (exit 134, a C++ stack trace): the figures
thread, a daemon, was killed inside matplotlib's FreeType at interpreter exit. That
happens only when a drawing outlasts the exit, so each interrupted process also reports
any thread of ours alive when its interpreter exits, and the in-process test checks that
none is left once a search returns, interrupted while drawing or finished.
"""

from __future__ import annotations

import _thread
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from petrinas.cli import search_main
from support import REPO, TINY, read_tsv

# search.py as `python search.py` runs it, with Ctrl-C raising KeyboardInterrupt (see
# support.CTRL_C_ON), and a line on stderr for each thread of ours still there when the
# interpreter exits (atexit runs once the threads that are no daemons are joined).
CHECKED = ("import atexit, runpy, signal, sys, threading; "
           "signal.signal(signal.SIGINT, signal.default_int_handler); "
           "atexit.register(lambda: [sys.stderr.write(f'left running at exit: {t.name}\\n') "
           "for t in threading.enumerate() if t.name.startswith('petrinas')]); "
           "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
# 2 seeds and 4 children: the interrupts before the last can leave at most 2 children
# submitted (2 slots), so the last session always submits one of its own (a child
# submitted before and re-run after a resume is not journaled again, and with 2
# children in all the last moment could pass unseen: the search then ended first)
SEARCH = [sys.executable, "-c", CHECKED, str(REPO / "scripts" / "search.py"), "--quiet",
          "--set", *TINY, "search.max_trials=6", "resources.max_concurrent=2"]
INTERRUPTED = "\ninterrupted: run the same command to resume\n"
WAIT_S = 240   # guards the suite against a hang; every wait below ends on an event
# PETRINAS_CTRL_C_REPEAT=N runs the every-moment test N times over (a fresh run each):
# the check that it is not flaky (docs/development.md)
REPEAT = int(os.environ.get("PETRINAS_CTRL_C_REPEAT", "1"))


def journal(run: Path) -> list[dict]:
    """The journal's complete records so far (a line being written is left out)."""
    path = run / "journal.jsonl"
    lines = path.read_text().split("\n")[:-1] if path.exists() else []
    return [json.loads(line) for line in lines]


@dataclass(frozen=True)
class Mark:
    """Where the run stood when a session started: its journal's length, and when its
    frontier figure was last written."""
    records: int
    figure: int

    @classmethod
    def of(cls, run: Path) -> "Mark":
        png = run / "frontier.png"
        return cls(len(journal(run)), png.stat().st_mtime_ns if png.exists() else -1)


def submitted(stage: str) -> Callable[[Path, Mark], bool]:
    """A job of `stage` was submitted in this session."""
    def event(run: Path, since: Mark) -> bool:
        return any(r["event"] == "submit" and r["spec"]["stage"] == stage
                   for r in journal(run)[since.records:])
    return event


def figure_written(run: Path, since: Mark) -> bool:
    """frontier.png written in this session: the figures thread is drawing the rest
    (pool, seeds, hypervolume, each PNG and PDF)."""
    return Mark.of(run).figure > since.figure


# (what the search is doing, the event that marks it), in the order a search meets them;
# "as a resumed run starts" is while its local Ray instance starts too
MOMENTS = [("seeds training", submitted("seed")),
           ("figures drawn after a result", figure_written),
           ("figures drawn as a resumed run starts", figure_written),
           ("grown children training", submitted("search"))]


def interrupt_when(run: Path, event: Callable[[Path, Mark], bool], moment: str) -> str:
    """Start the search, send SIGINT once `event` happens; returns its stderr."""
    since = Mark.of(run)
    search = subprocess.Popen([*SEARCH, "--out", str(run)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + WAIT_S
        while not event(run, since):
            assert search.poll() is None, f"{moment}: the search ended first"
            assert time.monotonic() < deadline, f"{moment}: never happened"
            time.sleep(0.02)
        search.send_signal(signal.SIGINT)
        _, err = search.communicate(timeout=WAIT_S)
    finally:
        if search.poll() is None:
            os.killpg(search.pid, signal.SIGKILL)
    assert search.returncode == 130, f"{moment}: exit {search.returncode}\n{err[-3000:]}"
    return err


@pytest.mark.usefixtures("shared_ray")
@pytest.mark.parametrize("attempt", range(1, REPEAT + 1), ids=lambda k: f"{k}of{REPEAT}")
def test_ctrl_c_at_every_moment_exits_130_and_the_run_resumes(tmp_path, capsys, attempt):
    """Fails if any interrupt ends other than in exit 130 with the one line (the abort:
    134, 'Aborted', a stack trace; a thread of ours alive at exit), or if the run does
    not finish when resumed (the same command, in this process, to the end)."""
    run = tmp_path / "run"
    for moment, event in MOMENTS:
        err = interrupt_when(run, event, moment)
        assert err == INTERRUPTED, f"{moment}:\n{err[-3000:]}"
    assert search_main([*SEARCH[4:], "--out", str(run)]) == 0, capsys.readouterr().err
    rows = read_tsv(run / "pool.tsv")
    assert len(rows) == 6 and {r["stage"] for r in rows} == {"seed", "search"}


def _ours() -> set[threading.Thread]:
    """Threads started by petrinas or by what it opens (a TensorBoard writer's), not
    Ray's own, which live as long as the module's Ray instance."""
    return {t for t in threading.enumerate()
            if t.name.startswith("petrinas") or type(t).__module__.startswith("tensorboard")}


@pytest.mark.usefixtures("shared_ray")
def test_no_thread_of_ours_outlives_a_search_interrupted_or_finished(tmp_path, capsys):
    """Fails if the figures thread (or TensorBoard's writer thread) is left running
    after the search returns: at interpreter exit Python kills such a thread where it
    stands. Interrupted (KeyboardInterrupt in the main thread, as Ctrl-C raises it)
    while its figures are being drawn, then resumed to the end."""
    args = ["--quiet", "--out", str(tmp_path / "run"), "--set", *TINY,
            "search.max_trials=3"]
    drawing = threading.Event()
    # another test of this process may have left a writer thread; this search's count
    before = _ours()

    def ctrl_c_while_drawing() -> None:
        while not any(t.name == "petrinas-figures" for t in threading.enumerate()):
            if drawing.wait(0.005):
                return
        drawing.set()
        _thread.interrupt_main()   # SIGINT's KeyboardInterrupt, in the main thread

    # interrupt_main does nothing where SIGINT is ignored (pytest as a background job)
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    watcher = threading.Thread(target=ctrl_c_while_drawing, name="test-watcher")
    watcher.start()
    try:
        code = search_main(args)
    finally:
        drawing.set()
        watcher.join()
        signal.signal(signal.SIGINT, handler)
    assert code == 130
    assert capsys.readouterr().err == INTERRUPTED
    assert not _ours() - before
    assert search_main(args) == 0
    assert not _ours() - before
