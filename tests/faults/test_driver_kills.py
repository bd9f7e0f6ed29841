"""(a) The driver SIGKILLed at two seeded random moments of one run, then run to the
end: no completed result lost or changed, ids unique, budget kept, and the final
frontier equals the one recomputed from pool.tsv."""

import os
import random
import signal
import subprocess
import sys
import time

from petrinas.report.frontier import frontier_ids
from petrinas.engine.store import history
from support import REPO, TINY, numeric, read_tsv

MAX_TRIALS = 9


def test_kills_at_random_moments_then_completion(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "scripts" / "search.py"), "--out", str(out), "--quiet",
           "--set", f"search.max_trials={MAX_TRIALS}", *TINY]
    rng = random.Random(20261123)
    seen: dict[str, dict] = {}
    for kill in range(2):
        proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        # A moment after this session has made progress: Ray's start-up takes a few
        # seconds, so the delay counts from this session's first new result.
        start_rows = len(read_tsv(out / "pool.tsv")) if (out / "pool.tsv").exists() else 0
        deadline = time.time() + 120
        while time.time() < deadline:
            if (out / "pool.tsv").exists() and len(read_tsv(out / "pool.tsv")) > start_rows:
                break
            time.sleep(0.1)
        time.sleep(rng.uniform(0.0, 3.0))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        rows = {r["trial_id"]: r for r in read_tsv(out / "pool.tsv")}
        for trial_id, row in seen.items():
            assert rows[trial_id] == row, f"kill {kill}: {trial_id} changed or vanished"
        seen.update(rows)

    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
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
