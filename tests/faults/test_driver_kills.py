"""(a) The driver SIGKILLed at two seeded random moments of one run, then run to the
end (the same command, in this process: the resume needs no process of its own): no completed result lost or changed, ids unique, budget kept, and the final
frontier equals the one recomputed from pool.tsv.

A moment is drawn as a count of the session's journal records (submissions and
results): the kill comes at whatever the driver does just after its k-th record, on a
fast machine or a slow one, and always before the run's end."""

import os
import random
import signal
import subprocess
import sys

import pytest

from petrinas.cli import search_main
from petrinas.report.frontier import frontier_ids
from petrinas.engine.store import history
from support import REPO, TINY, numeric, read_tsv, wait_for

MAX_TRIALS = 6          # 12 journal records (a submission and a result each)
KILL_AFTER = [(3, 5), (2, 4)]   # records of each session: at most 9, before the end


def journaled(run_dir) -> int:
    return len(history(run_dir)) if (run_dir / "journal.jsonl").exists() else 0


@pytest.mark.usefixtures("shared_ray")
def test_kills_at_random_moments_then_completion(tmp_path, capsys):
    """Fails if a kill loses or changes a result already written, leaves a trial id
    reused, a trial in flight never finished, the budget overrun, or a frontier file
    that disagrees with pool.tsv."""
    out = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "scripts" / "search.py"), "--out", str(out), "--quiet",
           "--set", f"search.max_trials={MAX_TRIALS}", *TINY, "dataset.max_train=128"]
    rng = random.Random(20261123)
    seen: dict[str, dict] = {}
    for kill, (low, high) in enumerate(KILL_AFTER):
        proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        # At least one result of this session first (its first records may be the
        # submissions of the 2 slots: hence 3 in the first session).
        at = journaled(out) + rng.randint(low, high)
        wait_for(lambda: journaled(out) >= at or proc.poll() is not None,
                 f"kill {kill}: journal record {at}", poll_s=0.05)
        assert proc.poll() is None, f"kill {kill}: the run ended before record {at}"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        rows = {r["trial_id"]: r for r in read_tsv(out / "pool.tsv")}
        for trial_id, row in seen.items():
            assert rows[trial_id] == row, f"kill {kill}: {trial_id} changed or vanished"
        seen.update(rows)

    # The same command, run to the end in this process on the suite's Ray instance.
    assert search_main(cmd[2:]) == 0, capsys.readouterr().err[-3000:]
    final = {r["trial_id"]: r for r in read_tsv(out / "pool.tsv")}
    for trial_id, row in seen.items():
        assert final[trial_id] == row
    submitted = [r["trial_id"] for r in history(out) if r["event"] == "submit"]
    assert len(submitted) == len(set(submitted)) == MAX_TRIALS  # unique, budget kept
    # Every trial in flight at a kill was resubmitted (or adopted) and ended exactly once.
    assert set(final) == set(submitted)
    results = [r["trial_id"] for r in history(out) if r["event"] == "result"]
    assert sorted(results) == sorted(submitted)
    assert all(r["status"] in ("ok", "duplicate") for r in final.values())

    rows = [numeric(r) for r in final.values()]
    hull, band = frontier_ids(rows, 0.025)
    assert [r["trial_id"] for r in read_tsv(out / "frontier.tsv")] == hull
    assert [r["trial_id"] for r in read_tsv(out / "frontier_eps.tsv")] == band
