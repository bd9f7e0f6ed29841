"""(d) An unwritable run directory exits 2 at start; a disk that fills up mid-run stops
the search cleanly (exit 2, one line) and leaves it resumable: with space again, the
same command finishes it and keeps every result it had."""

import subprocess

import pytest

from petrinas.cli import search_main
from support import TINY, read_tsv


def test_unwritable_run_directory_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert search_main(["--out", str(blocker / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --out") and "\n" not in err


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=350k", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip("mounting a small tmpfs needs root: " + done.stderr.decode().strip())
    yield mount
    subprocess.run(["umount", "-l", str(mount)])


@pytest.mark.usefixtures("shared_ray")
def test_a_full_disk_stops_cleanly_and_the_run_resumes(small_disk, capsys):
    """In this process, on the suite's Ray instance (the code from the command line on,
    as `search.py` runs it; test_bad_input checks the script's own exit code). Fails if
    a full disk ends the search other than in exit 2 with one line saying to resume, or
    if the resumed run loses, changes or lacks a result."""
    out = small_disk / "run"
    args = ["--out", str(out), "--quiet", "--set", "search.max_trials=8", *TINY]
    assert search_main(args) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: cannot write") and "No space left" in message
    assert "\n" not in message and "run the same command to resume" in message
    before = {r["trial_id"]: r for r in read_tsv(out / "pool.tsv")}
    assert 0 < len(before) < 8, "the disk filled up mid-run"

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    assert search_main(args) == 0, capsys.readouterr().err[-2000:]
    after = {r["trial_id"]: r for r in read_tsv(out / "pool.tsv")}
    assert len(after) == 8 and all(r["status"] in ("ok", "duplicate") for r in after.values())
    for trial_id, row in before.items():
        assert after[trial_id] == row
