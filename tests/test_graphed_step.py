"""The graphed training step's bookkeeping, on the CPU.

A CUDA graph needs CUDA (tests/gpu/test_gpu_graphs.py captures real ones). What the
graph does not decide can be checked here, through the real trainer loop: that every
step's batch and learning rate reach the graph's static tensors, that the warm-up and the
odd-sized last batch run eagerly and none is dropped, that a changed drop-path rate
captures again, and that a failed capture falls back to eager training without losing
the step. `RerunGraph` stands in for the graph: its replay runs the recorded step again,
on the same tensors, which is what a CUDA graph's replay computes.

On the CPU the graphed step's SGD is the eager one (with its learning rates in tensors),
so the two train bit for bit alike; on CUDA it is SGD's fused kernel, whose rounding the
GPU tests allow for.
"""

import logging

import pytest
import torch

from petrinas.config import DatasetConfig
from petrinas.data import load_splits
from petrinas.train.step import WARMUP_STEPS
from petrinas.train.trainer import train
from test_trainer import _cfg, _model

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny models: see conftest.py


class RerunGraph:
    """warm(fn) runs fn; capture(fn) returns fn as the replay, unless told to fail."""

    def __init__(self, fail_capture: bool = False):
        self.fail_capture = fail_capture

    def warm(self, fn):
        return fn()

    def capture(self, fn):
        if self.fail_capture:
            raise RuntimeError("operation not permitted when stream is capturing")
        return fn


@pytest.fixture(scope="module")
def splits():
    return load_splits(DatasetConfig(name="digits"), seed=0)   # 1294 training images


def _run(splits, cfg, graph=None):
    model = _model()
    result = train(model, splits, cfg, seed=0, graph=graph, eval_test=False)
    return result, model.state_dict()


def _same_training(a, b) -> None:
    (result_a, state_a), (result_b, state_b) = a, b
    curve = [(m.train_loss, m.train_top1, m.val_loss, m.val_top1, m.lr)
             for m in result_a.history]
    assert curve == [(m.train_loss, m.train_top1, m.val_loss, m.val_top1, m.lr)
                     for m in result_b.history]
    assert all(torch.equal(state_b[k], v) for k, v in state_a.items())


def test_graphed_step_trains_exactly_as_the_eager_step(splits):
    """Fails if a step's batch is not copied into the static inputs, if the learning
    rates are not written to their device tensors before each step, if the L1 group's
    rate is the other group's, or if the last partial batch is dropped."""
    cfg = _cfg(epochs=2, augment=True, lr_min=0.01, warmup_epochs=1)
    alpha = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    runs = []
    for graph in (None, RerunGraph()):
        alpha.data = torch.tensor([1.0, -2.0])
        model = _model()
        result = train(model, splits, cfg, seed=0, graph=graph, eval_test=False,
                       l1_params=[alpha], l1=0.05, extra_params_lr=0.3)
        runs.append((result, {**model.state_dict(), "alpha": alpha.detach().clone()}))
    _same_training(*runs)
    # 1294 images in batches of 64: 20 full batches and one of 14 per epoch.
    assert runs[0][0].final["training_step"] == {"mode": "eager"}
    assert runs[1][0].final["training_step"] == {
        "mode": "cuda_graph", "warmup": WARMUP_STEPS, "captures": 1,
        "replayed": 2 * 20 - WARMUP_STEPS, "eager": 2}


def test_a_changed_drop_path_rate_is_captured_again(splits):
    """The rate is a Python float inside the model's forward, fixed in a graph: 0, 0.1
    and 0.2 over three epochs are three captures. Fails if the graph is kept across a
    change of rate (the replay would keep the first epoch's rate)."""
    cfg = _cfg(epochs=3, drop_path=0.3)
    eager, graphed = _run(splits, cfg), _run(splits, cfg, RerunGraph())
    _same_training(eager, graphed)
    assert graphed[0].final["training_step"]["captures"] == 3


def test_a_failed_capture_trains_on_eagerly_and_says_so(splits, caplog):
    """Fails if the step whose capture failed is lost or run twice, if the phase does
    not go on eagerly, or if the failure is not one line in the log and in the result."""
    cfg = _cfg(epochs=2)
    with caplog.at_level(logging.WARNING, logger="petrinas.train.step"):
        graphed = _run(splits, cfg, RerunGraph(fail_capture=True))
    _same_training(_run(splits, cfg), graphed)
    summary = graphed[0].final["training_step"]
    assert summary == {"mode": "cuda_graph", "warmup": WARMUP_STEPS, "captures": 0,
                       "replayed": 0, "eager": 2 * 21 - WARMUP_STEPS,
                       "failed": "operation not permitted when stream is capturing"}
    lines = [r.getMessage() for r in caplog.records if r.name == "petrinas.train.step"]
    assert lines == ["cuda_graphs: warm-up or capture failed (operation not permitted "
                     "when stream is capturing); this phase trains eagerly from here"]


def test_cuda_graphs_is_ignored_on_the_cpu(splits):
    """Fails if the key changes CPU training (it must stay eager and identical)."""
    on = _run(splits, _cfg(epochs=1, cuda_graphs=True))
    _same_training(_run(splits, _cfg(epochs=1)), on)
    assert on[0].final["training_step"] == {"mode": "eager"}
