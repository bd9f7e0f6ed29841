"""TensorBoard event files of a stage, so `tensorboard --logdir <run>` shows its curves.

Written by the driver, the only writer of the run directory (no shared filesystem is
assumed: the curves travel back from the jobs inside their results, as metrics.json):

* `tensorboard/<trial>/`: every phase of the trial, by epoch: `<phase>/train_loss`,
  `val_loss`, `train_top1`, `val_top1`, `lr` (phases: seed_train, search_train,
  post_train, train in the eval stage), the same numbers as its metrics.json;
* `tensorboard/run/`: after each result, against cumulative compute (device seconds,
  the step): `run/pool_size`, `run/frontier_size`, `run/best_val_error` and, where the
  stage keeps one, `run/hypervolume_val` / `run/hypervolume_test`.

The writer is `torch.utils.tensorboard.SummaryWriter`: it ships with torch, which every
job already needs, and is maintained with it; it writes the event format through the
`tensorboard` package, whose own reader the tests use. No second logging library.
"""

from __future__ import annotations

from pathlib import Path

EPOCH_TAGS = ("train_loss", "val_loss", "train_top1", "val_top1", "lr")
RUN = "run"


class EventLog:
    def __init__(self, stage_dir: Path):
        self.dir = Path(stage_dir) / "tensorboard"
        self._run = None            # the run-level writer, opened on first use
        self._compute = 0.0

    def has_trial(self, trial_id: str) -> bool:
        return (self.dir / trial_id).is_dir()

    def trial(self, trial_id: str, history: dict) -> None:
        """A trial's per-epoch curves, from metrics.json's `history` (phase -> record)."""
        epochs = [(phase, e) for phase, record in history.items()
                  for e in (record or {}).get("history", [])]
        if not epochs:
            return
        writer = _writer(self.dir / trial_id)
        try:
            for phase, epoch in epochs:
                for tag in EPOCH_TAGS:
                    if epoch.get(tag) is not None:
                        writer.add_scalar(f"{phase}/{tag}", float(epoch[tag]),
                                          int(epoch["epoch"]))
        finally:
            writer.close()

    def count_compute(self, compute_s: float) -> None:
        """Results recorded before this session (a resumed run): their compute only."""
        self._compute += compute_s

    def run_point(self, compute_s: float, values: dict) -> None:
        """The run's figures after a result that used `compute_s` device seconds."""
        self._compute += compute_s
        if self._run is None:
            self._run = _writer(self.dir / RUN)
        step = int(round(self._compute))
        for tag, value in values.items():
            if value is not None:
                self._run.add_scalar(f"{RUN}/{tag}", float(value), step)

    def close(self) -> None:
        if self._run is not None:
            self._run.close()
            self._run = None


def _writer(path: Path):
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(log_dir=str(path), flush_secs=10)
