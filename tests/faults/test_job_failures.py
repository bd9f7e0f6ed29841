"""(c) A job that raises, one whose loss turns NaN and one that runs out of memory: each
is recorded as failed with its reason in pool.tsv and its trial folder, the search goes
on, and the live status counts the failures. Also: a poisoned weights file runs no code."""

import io
import re
from pathlib import Path

import pytest
import torch

from petrinas.config_loader import load_config
from petrinas.report.progress import Progress
from petrinas.engine.runner import run_search
from support import TINY, read_tsv

pytestmark = pytest.mark.usefixtures("shared_ray")


def search(tmp_path, *overrides, name="run"):
    stream = io.StringIO()
    config = load_config("petridish_digits", [*TINY, *overrides])
    summary = run_search(config, tmp_path / name, progress=Progress(stream=stream))
    return summary, read_tsv(tmp_path / name / "pool.tsv"), stream.getvalue()


def assert_failed_rows_explain(tmp_path, rows, words, name="run"):
    for row in rows:
        assert row["status"] == "failed" and words in row["error"], row
        folder = tmp_path / name / "trials" / row["trial_id"]
        assert words in (folder / "error.txt").read_text()
        assert '"status": "failed"' in (folder / "metrics.json").read_text()


def test_nan_loss_fails_the_children_and_the_search_goes_on(tmp_path):
    summary, rows, status = search(tmp_path, "search.max_trials=5",
                                   "search.search_train.lr=1e12",
                                   "search.search_train.grad_clip=0")
    seeds = [r for r in rows if r["stage"] == "seed"]
    children = [r for r in rows if r["stage"] == "search"]
    assert len(seeds) == 2 and all(r["status"] == "ok" for r in seeds)
    assert len(children) == 3
    assert_failed_rows_explain(tmp_path, children, "TrainingError: loss became")
    assert summary.failed == 3 and summary.trials == 5
    assert "3 failed" in status.splitlines()[-1]


def test_out_of_memory_on_cpu_fails_with_the_limit_named(tmp_path):
    summary, rows, status = search(tmp_path, "search.max_trials=3",
                                   "resources.memory_per_job_mb=64")
    assert len(rows) == 2 and summary.finish_reason == "all seeds failed"
    assert_failed_rows_explain(tmp_path, rows, "out of memory")
    assert all("resources.memory_per_job_mb=64" in r["error"] for r in rows)
    assert "2 failed" in status.splitlines()[-1]


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_poisoned_parent_fails_its_children_and_runs_no_code(tmp_path):
    first, _, _ = search(tmp_path, "search.max_trials=2")
    assert first.failed == 0
    marker = tmp_path / "pwned"
    for trial in ("t0000", "t0001"):
        buffer = io.BytesIO()
        torch.save({"weight": Payload(marker)}, buffer, pickle_protocol=2)
        (tmp_path / "run" / "trials" / trial / "weights.pt").write_bytes(buffer.getvalue())
    # Raising the budget resumes the same run: its children must read those weights.
    summary, rows, status = search(tmp_path, "search.max_trials=4")
    children = [r for r in rows if r["stage"] == "search"]
    assert len(children) == 2
    assert_failed_rows_explain(tmp_path, children, "refused to load")
    assert not marker.exists()
    assert summary.failed == 2
    # torch's refusal is bold on a terminal: no ESC[1m / ESC[0m in the files it reaches
    # (fails if the error line is not stripped of them)
    run = tmp_path / "run"
    for path in [run / "pool.tsv", run / "logs" / "search.log",
                 *(run / "trials" / r["trial_id"] / "error.txt" for r in children)]:
        assert "\x1b" not in path.read_text(), path


def test_nothing_in_the_package_loads_a_pickle_or_unsafe_yaml():
    """Files from a run directory load no code: no pickle or unsafe YAML loader anywhere
    in petrinas/, and every torch.load restricted to tensors."""
    unsafe = re.compile(r"\b(c?[Pp]ickle|dill)\.loads?\(|yaml\.(unsafe_)?load\(|yaml\.Loader\b")

    def bad(line: str) -> bool:
        return bool(unsafe.search(line)) or ("torch.load(" in line
                                              and "weights_only=True" not in line)
    package = Path(__file__).resolve().parents[2] / "petrinas"
    found = [f"{path.relative_to(package)}:{n}: {line.strip()}"
             for path in sorted(package.rglob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1) if bad(line)]
    assert found == []
    assert len(list(package.rglob("*.py"))) > 20  # the scan saw the package
