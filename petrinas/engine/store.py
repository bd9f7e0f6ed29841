"""The run directory: resolved config, write-ahead journal, trial folders, lock.

Every decision is durable before the loop acts on it:
- a submission (trial id, job spec, the strategy's RNG state) is appended to
  `journal.jsonl` and fsync'ed before the job starts;
- a result is written to `trials/<id>/` (weights, desc, then metrics.json last, each
  through a temp file and a rename) and then journaled, before the strategy sees it.

Re-opening the directory replays the journal into a fresh strategy, so the same command
resumes the run: trials that were in flight are resubmitted under their ids, or, if their
folder was completed before the kill, adopted without retraining. A torn last line (killed
mid-write) is dropped. A lock held by the live driver (flock, so it dies with its
process) keeps a second driver out.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

from petrinas.config import Config, Role, check_run_config, config_to_yaml, keys_with, \
    read_yaml_file
from petrinas.errors import ConfigError, InputError
from petrinas.fileio import (ensure_dir, fsync_dir, replace_durably, write_bytes_atomic,
                             write_text_atomic)
from petrinas.model_desc.desc import ModelDesc
from petrinas.search.rows import COLUMNS, DUPLICATE, FAILED, LOST, OK, make_row, pooled
from petrinas.search.strategy import JobSpec, Strategy

log = logging.getLogger("petrinas.store")

JOURNAL = "journal.jsonl"
SNAPSHOT = "snapshot.json"
ARCHIVE = "journal-archive"
LOCK = ".lock"
# Records between snapshots: a restart replays at most this many journal lines.
SNAPSHOT_EVERY = 200
# Keys that may change when a run is resumed (each declares it in config.py): budgets,
# resources and reporting do not change what a finished trial means.
RESUMABLE_KEYS = keys_with(Role.RESUMABLE)


class RunStore:
    def __init__(self, run_dir: Path, lock_fd: int, id_prefix: str = "t",
                 clock: Callable[[], float] = time.monotonic):
        """`clock`: seconds from a monotonic clock; the time budget is read from it."""
        self.dir = run_dir
        self.id_prefix = id_prefix
        self._lock_fd = lock_fd
        self.records: list[dict] = []         # journal records since the snapshot
        self.snapshot: dict | None = None
        self._seq = 0                           # sequence number of the next record
        self.rows: dict[str, dict] = {}         # trial id -> pool.tsv row (see rows.py)
        self.compute_s = 0.0                    # the rows' compute_s, summed
        self.specs: dict[str, JobSpec] = {}     # trial id -> what it trains
        self.pooled = 0                         # rows whose model is in the pool
        self._elapsed_before = 0.0
        self._clock = clock
        self._opened_at = clock()
        self._journal = None
        self.created = False

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, run_dir: str | Path, config: Config, *, overwrite: bool = False,
             resumable_keys: tuple[str, ...] = RESUMABLE_KEYS, id_prefix: str = "t",
             budgets: bool = True, clock: Callable[[], float] = time.monotonic
             ) -> "RunStore":
        """Lock the directory, check its config, and load its journal (creating it).

        A config that differs from the one there in any key outside `resumable_keys` is
        refused unless `overwrite`, which discards the old run. With `budgets`, a trial
        or time budget lowered below what the run has already used is refused too: a
        budget can grow on resume, not shrink. Nothing is written before these checks."""
        run_dir = Path(run_dir)
        created = not run_dir.exists()
        try:
            ensure_dir(run_dir)
            fd = _acquire_lock(run_dir)
        except PermissionError:
            raise InputError(f"--out {run_dir}: not writable") from None
        except OSError as exc:
            raise InputError(f"--out {run_dir}: cannot use it ({exc.strerror or exc})") from None
        store = cls(run_dir, fd, id_prefix, clock)
        store.created = created
        try:
            old = store._check_config(config, overwrite, resumable_keys)
            store._load_journal()
            if budgets and old:
                store._check_budgets(old, config)
            write_text_atomic(run_dir / "config.yaml", config_to_yaml(config))
        except BaseException:
            store.close()
            if created:
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        return store

    def _check_config(self, config: Config, overwrite: bool,
                      resumable_keys: tuple[str, ...]) -> dict | None:
        """The run's config as it was (None for a new run), if `config` may resume it."""
        path = self.dir / "config.yaml"
        if not path.exists() or overwrite:
            if overwrite:
                self._clear()
            return None
        try:
            old = read_yaml_file(path)
            check_run_config(old, resumable_keys)
        except ConfigError as exc:
            # Not --overwrite: it would delete the trials, which a damaged copy of the
            # configuration they were trained with does not touch.
            where = "" if str(exc).startswith(str(path)) else f"{path}: "
            raise ConfigError(f"{where}{exc}; this file records the configuration the "
                              f"run's trials were trained with: repair it (the trials are "
                              f"intact), or use another --out") from None
        diff = _config_diff(_at_defaults(old), config.to_dict(), resumable_keys)
        if diff:
            raise ConfigError(f"{self.dir} holds a run of another configuration "
                              f"({diff}); use another --out or --overwrite")
        return old

    def _check_budgets(self, old: dict, config: Config) -> None:
        trials = len(self.snapshot["specs"]) if self.snapshot else 0
        trials += sum(r["event"] == "submit" for r in self.records)
        rows = dict(self.snapshot["rows"]) if self.snapshot else {}
        rows.update((r["trial_id"], r["row"]) for r in self.records if "row" in r)
        compute = sum(_compute(row) for row in rows.values())
        used = {"max_trials": (trials, f"{trials} trials"),
                "max_hours": (self._elapsed_before / 3600,
                              f"{self._elapsed_before / 3600:.3g} hours"),
                "max_compute_hours": (compute / 3600, f"{compute / 3600:.3g} compute hours")}
        for key, (spent, text) in used.items():
            before, now = old.get("search", {}).get(key), getattr(config.search, key)
            if before is not None and now < before and now < spent and (
                    now or key != "max_compute_hours"):   # 0: no compute limit
                raise ConfigError(f"search.{key}={now:g}: this run has already used "
                                  f"{text}; a budget can grow when a run resumes, not "
                                  f"shrink (use another --out or --overwrite)")

    def _clear(self) -> None:
        for child in self.dir.iterdir():
            if child.name == LOCK:
                continue
            shutil.rmtree(child) if child.is_dir() else child.unlink()

    def _load_journal(self) -> None:
        """The snapshot (if any) and the journal records written after it. A snapshot
        that cannot be read is rebuilt from the whole history (journal-archive/ and the
        journal), which it only summarizes."""
        try:
            self.snapshot = _read_snapshot(self.dir / SNAPSHOT)
        except ValueError as exc:
            log.warning("%s is unreadable (%s); rebuilding the run's state from %s/ and "
                        "the journal", self.dir / SNAPSHOT, exc, ARCHIVE)
            self.snapshot = None
            self.records = history(self.dir)
        if self.snapshot is not None:
            self._seq = self.snapshot["seq"] + 1
            self._elapsed_before = float(self.snapshot["elapsed"])
        path = self.dir / JOURNAL
        if path.exists() and not self.records:
            # Records up to the snapshot may remain if a stop came before the rotation.
            self.records = [r for r in _read_journal(path) if r["seq"] >= self._seq]
        if self.records:
            self._seq = self.records[-1]["seq"] + 1
            self._elapsed_before = float(self.records[-1].get("elapsed", 0.0))
        self._open_journal()

    def _open_journal(self) -> None:
        path = self.dir / JOURNAL
        new = not path.exists()
        self._journal = open(path, "a")
        if new:
            fsync_dir(self.dir)

    def discard_if_empty(self) -> None:
        """Remove a directory this run created and never journaled into (refused start)."""
        if self.created and not self.records and self.snapshot is None:
            self.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ------------------------------------------------------------------- replay
    def replay(self, strategy: Strategy) -> list[str]:
        """Restore `strategy` from the snapshot and the journal after it; returns the ids
        still in flight, in order."""
        if self.snapshot is not None:
            strategy.load_state_dict(self.snapshot["strategy"])
            for row in self.snapshot["rows"].values():
                self._set_row(row)
            self.specs = {t: JobSpec.from_dict(s) for t, s in self.snapshot["specs"].items()}
        for record in self.records:
            self._apply(record, strategy)
        return list(strategy.in_flight)

    def _set_row(self, row: dict) -> None:
        old = self.rows.get(row["trial_id"])
        self.pooled += pooled(row) - (pooled(old) if old else 0)
        self.compute_s += _compute(row) - (_compute(old) if old else 0.0)
        self.rows[row["trial_id"]] = row

    def _apply(self, record: dict, strategy: Strategy) -> None:
        event, trial_id = record["event"], record.get("trial_id")
        if event == "submit":
            spec = JobSpec.from_dict(record["spec"])
            self.specs[trial_id] = spec
            strategy.restore_submission(trial_id, spec, record["rng"])
        elif event == "result":
            self._set_row(record["row"])
            strategy.on_trial_complete(trial_id, result=record["row"])
        elif event == "failed":
            self._set_row(record["row"])
            strategy.on_trial_complete(trial_id, error=record["row"]["error"])
        elif event == "cancelled":
            strategy.on_trial_cancelled(trial_id)
        elif event == "lost":
            self._set_row({**self.rows[trial_id], "status": LOST})
            strategy.on_trial_lost(trial_id)

    def mark_lost(self, strategy: Strategy) -> list[str]:
        """Journal every trained model whose files are gone (deleted by hand, a disk
        restored from an old backup) as lost: the run goes on without it."""
        lost = [tid for tid, row in self.rows.items() if row["status"] == OK
                and not all((self.trial_dir(tid) / name).is_file()
                            for name in ("desc.yaml", "weights.pt"))]
        for trial_id in lost:
            self._append({"event": "lost", "trial_id": trial_id})
            self._set_row({**self.rows[trial_id], "status": LOST})
            strategy.on_trial_lost(trial_id)
        return lost

    # ----------------------------------------------------------------- trial ids
    def next_trial_id(self) -> str:
        """Ids are t0000, t0001, ... (e0000, ... in the eval stage): unique within the
        run, never reused."""
        return f"{self.id_prefix}{len(self.specs):04d}"

    # ------------------------------------------------------------------ writing
    def elapsed(self) -> float:
        """Seconds of driver time spent on this run, over every session."""
        return self._elapsed_before + self._clock() - self._opened_at

    def _append(self, record: dict) -> None:
        record = {"seq": self._seq, "elapsed": round(self.elapsed(), 3), **record}
        self._seq += 1
        self._journal.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())
        self.records.append(record)

    def record_submit(self, trial_id: str, spec: JobSpec, rng_state: dict) -> None:
        if trial_id in self.specs:
            raise ValueError(f"trial id {trial_id} is already used")
        self._append({"event": "submit", "trial_id": trial_id, "spec": spec.to_dict(),
                      "rng": rng_state})
        self.specs[trial_id] = spec

    def record_result(self, trial_id: str, output: Any) -> dict:
        """Write the trial folder, then journal its row; returns the row.

        A duplicate (its architecture was trained by another trial) has no weights."""
        status = DUPLICATE if output.row.get("duplicate_of") else OK
        row = make_row(trial_id, self.specs[trial_id], output.row, status=status,
                       elapsed_s=self.elapsed())
        folder = self.trial_dir(trial_id)
        if output.weights is not None:
            write_bytes_atomic(folder / "weights.pt", output.weights)
        ModelDesc.from_dict(output.desc).save(folder / "desc.yaml")
        (folder / "error.txt").unlink(missing_ok=True)  # from an earlier, failed attempt
        metrics = {**row, "history": output.history, "notes": output.notes}
        write_text_atomic(folder / "metrics.json", json.dumps(metrics, indent=1))
        self._append({"event": "result", "trial_id": trial_id, "row": row})
        self._set_row(row)
        return row

    def record_failure(self, trial_id: str, error: str, detail: str = "",
                       spent: dict | None = None) -> dict:
        """A failed trial: its error, and what it spent (compute_s, device) if known."""
        row = make_row(trial_id, self.specs[trial_id], spent or {}, status=FAILED,
                       elapsed_s=self.elapsed(), error=error)
        folder = self.trial_dir(trial_id)
        write_text_atomic(folder / "error.txt", (detail or error) + "\n")
        write_text_atomic(folder / "metrics.json", json.dumps(row, indent=1))
        self._append({"event": "failed", "trial_id": trial_id, "row": row})
        self._set_row(row)
        return row

    def record_cancelled(self, trial_id: str) -> None:
        self._append({"event": "cancelled", "trial_id": trial_id})

    # ---------------------------------------------------------------- compaction
    def maybe_compact(self, strategy: Strategy) -> bool:
        """Compact once SNAPSHOT_EVERY records, or a quarter as many as the run has
        trials, have gathered since the last snapshot: a snapshot costs O(run), so
        spacing them in proportion keeps the cost per result flat, and a restart still
        replays at most a quarter of the history."""
        if len(self.records) < max(SNAPSHOT_EVERY, len(self.specs) // 4):
            return False
        self.compact(strategy)
        return True

    def compact(self, strategy: Strategy) -> None:
        """Write the whole state as one atomic snapshot, then move the journal segment it
        covers into journal-archive/ (kept: the history is never thrown away).

        A stop between the two steps is harmless: records the snapshot already covers
        are skipped by their sequence numbers when the run is opened again."""
        if not self.records:
            return
        last = self.records[-1]["seq"]
        state = {"seq": last, "elapsed": self.records[-1]["elapsed"],
                 "strategy": strategy.state_dict(), "rows": self.rows,
                 "specs": {t: s.to_dict() for t, s in self.specs.items()}}
        write_text_atomic(self.dir / SNAPSHOT, json.dumps(state, separators=(",", ":")))
        self._journal.close()
        archive = ensure_dir(self.dir / ARCHIVE)
        first = self.records[0]["seq"]
        replace_durably(self.dir / JOURNAL, archive / f"{first:08d}-{last:08d}.jsonl")
        self._open_journal()
        self.snapshot, self.records = state, []

    def adopt_finished(self, trial_id: str) -> dict | None:
        """A trial whose folder was completed before a kill but never journaled: its
        metrics.json (written last) holds the row, so it is recorded without retraining."""
        path = self.trial_dir(trial_id) / "metrics.json"
        try:
            metrics = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if metrics.get("status") not in (OK, DUPLICATE) or metrics.get("trial_id") != trial_id:
            return None
        row = {k: metrics[k] for k in COLUMNS if k in metrics}
        self._append({"event": "result", "trial_id": trial_id, "row": row})
        self._set_row(row)
        return row

    def trial_dir(self, trial_id: str) -> Path:
        return self.dir / "trials" / trial_id


# ------------------------------------------------------------------------ helpers

def _compute(row: dict) -> float:
    return float(row.get("compute_s") or 0.0)


def read_trial_desc(run_dir: Path, trial_id: str) -> dict:
    """A trial's description as plain data (safe YAML), to send to a job."""
    return ModelDesc.load(Path(run_dir) / "trials" / trial_id / "desc.yaml").to_dict()


def history(run_dir: Path) -> list[dict]:
    """Every journal record of `run_dir` ever written, archived segments included, in
    order: the run's full history (for audits and tests; resuming needs less)."""
    run_dir = Path(run_dir)
    segments = sorted((run_dir / ARCHIVE).glob("*.jsonl")) if (run_dir / ARCHIVE).exists() \
        else []
    records: dict[int, dict] = {}
    for path in segments + [run_dir / JOURNAL]:
        if path.exists():
            records.update((r["seq"], r) for r in _read_journal(path, repair=False))
    return [records[seq] for seq in sorted(records)]


def read_rows(run_dir: Path) -> list[dict]:
    """The pool rows of `run_dir` (snapshot, then journal), without locking it."""
    rows: dict[str, dict] = {}
    seq = 0
    try:
        state = _read_snapshot(Path(run_dir) / SNAPSHOT)
        records = _read_journal(Path(run_dir) / JOURNAL, repair=False) \
            if (Path(run_dir) / JOURNAL).exists() else []
    except ValueError:
        state, records = None, history(run_dir)  # the snapshot is rebuilt from the history
    if state is not None:
        rows, seq = dict(state["rows"]), state["seq"] + 1
    for record in records:
        if record["seq"] >= seq and record["event"] in ("result", "failed"):
            rows[record["trial_id"]] = record["row"]
        elif record["seq"] >= seq and record["event"] == "lost":
            rows[record["trial_id"]] = {**rows[record["trial_id"]], "status": LOST}
    return list(rows.values())


def _read_snapshot(path: Path) -> dict | None:
    """The snapshot, None if there is none; ValueError if it is truncated or corrupt."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        state = json.loads(text)
        for key in ("seq", "elapsed", "strategy", "rows", "specs"):
            state[key]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{type(exc).__name__}: {str(exc)[:80]}") from None
    return state


def is_locked(run_dir: Path) -> bool:
    """Whether a live driver holds `run_dir`."""
    try:
        fd = os.open(Path(run_dir) / LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _acquire_lock(run_dir: Path) -> int:
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise InputError(f"{run_dir} is in use by a running search ({holder}); "
                         "wait for it or stop it first") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    return fd


def _read_journal(path: Path, repair: bool = True) -> Iterator[dict]:
    """Journal records; a torn final line (killed mid-write) is dropped (and, with
    `repair`, cut off the file so appends start on a clean line)."""
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    good_bytes = 0
    for i, line in enumerate(lines):
        if not line.strip():
            good_bytes += len(line) + 1
            continue
        last = i == len(lines) - 1 or all(not rest.strip() for rest in lines[i + 1:])
        try:
            record = json.loads(line)
        except ValueError:
            if last:
                break  # torn tail
            raise ConfigError(f"{path}: corrupt record on line {i + 1}") from None
        if last and not data.endswith(b"\n"):
            break  # complete JSON but no newline: treat as torn too
        good_bytes += len(line) + 1
        yield record
    if repair and good_bytes < len(data):
        with open(path, "r+b") as f:
            f.truncate(min(good_bytes, len(data)))


# Keys the program fills in from others when they are 0 (runner.with_reference_point;
# each declares it in config.py):
# they differ whenever what they are derived from differs, so they are named only when
# nothing else differs (that is, when a user set them).
DERIVED_KEYS = keys_with(Role.DERIVED)
SHOWN_DIFFERENCES = 3


def _at_defaults(old: dict) -> dict:
    """A run's config with the keys it predates (written by an older version) at their
    defaults: a new key's default is what the run did before the key existed, so adding
    a key never refuses a resume. Derived keys stay absent (see _config_diff)."""
    def fill(have: dict, defaults: dict, prefix: str) -> dict:
        out = dict(have)
        for key, default in defaults.items():
            full = f"{prefix}{key}"
            if key not in have:
                if full not in DERIVED_KEYS:
                    out[key] = default
            elif isinstance(default, dict) and isinstance(have[key], dict):
                out[key] = fill(have[key], default, f"{full}.")
        return out
    return fill(old, Config().to_dict(), "")


def _config_diff(old: dict, new: dict, ignore: tuple[str, ...]) -> str:
    """The keys whose values differ (ignoring `ignore` keys), as text; '' if none."""
    # A derived key the run's config.yaml lacks (the run predates it) is no difference:
    # the resumed run takes the derived value, and its reports are rewritten with it.
    found = [d for d in _differences(old, new, ignore)
             if not (d[1] is None and d[0] in DERIVED_KEYS)]
    chosen = [d for d in found if d[0] not in DERIVED_KEYS] or found
    text = "; ".join(f"{key}: {a!r} there, {b!r} now"
                     for key, a, b in chosen[:SHOWN_DIFFERENCES])
    more = len(chosen) - SHOWN_DIFFERENCES
    return text + (f"; and {more} more" if more > 0 else "")


def _differences(old: dict, new: dict, ignore: tuple[str, ...], prefix: str = ""
                 ) -> Iterator[tuple[str, Any, Any]]:
    for key in sorted(set(old) | set(new)):
        full = f"{prefix}{key}"
        if any(full == k or full.startswith(k + ".") for k in ignore):
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            yield from _differences(a, b, ignore, f"{full}.")
        elif a != b:
            yield full, a, b
