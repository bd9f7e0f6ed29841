"""The training loop, run for real on digits."""

import dataclasses
import math

import pytest
import torch
from torch import nn

from petrinas.config import DatasetConfig, TrainConfig
from petrinas.data import load_splits
from petrinas.errors import TrainingError
from petrinas.train.trainer import (EpochMetrics, TrainResult, _setup, _step, _training_forward,
                                    Window, recalibrate_batchnorm, autocast_dtype, cudnn_benchmark, evaluate,
                                    lr_factor, train)


class SmallCNN(nn.Module):
    """A tiny conv net with BatchNorm, an optional aux head and a drop_path_prob knob."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, stride=2, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        )
        self.head = nn.Linear(32, num_classes)
        self.aux = nn.Linear(32 * 4 * 4, num_classes)
        self.drop_path_prob = 0.0
        self.seen_drop_path: list[float] = []

    def forward(self, x, with_aux=False):
        if self.training:
            self.seen_drop_path.append(self.drop_path_prob)
        features = self.features(x)
        logits = self.head(features.mean(dim=(2, 3)))
        return (logits, self.aux(features.flatten(1))) if with_aux else logits


class NaNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(x.flatten(1)) * float("nan")


@pytest.fixture(scope="module")
def splits():
    return load_splits(DatasetConfig(name="digits"), seed=0)


def _cfg(**overrides) -> TrainConfig:
    return TrainConfig(**{"epochs": 3, "batch_size": 64, "lr": 0.05, **overrides})


def _model(seed=0):
    torch.manual_seed(seed)
    return SmallCNN()


def test_learns_digits(splits):
    model = _model()
    result = train(model, splits, _cfg(epochs=8, lr=0.1), seed=0, cpu_threads=2)
    assert isinstance(result, TrainResult) and len(result.history) == 8
    assert result.final["val_top1"] > 0.9
    assert result.final["test_top1"] > 0.85
    assert not model.training
    assert [m.epoch for m in result.history] == list(range(1, 9))
    for m in result.history:
        assert 0 <= m.train_top1 <= 1 and 0 <= m.val_top1 <= 1
    assert result.final["wall_s"] >= result.history[-1].seconds
    # The final metrics are the model's real state.
    assert evaluate(model, splits["val"]) == pytest.approx(
        (result.final["val_loss"], result.final["val_top1"]))


def test_same_seed_same_history(splits):
    cfg = _cfg(epochs=2, augment=True, cutout=2, drop_path=0.2, label_smoothing=0.1)
    runs = [train(_model(), splits, cfg, seed=3).to_dict() for _ in range(2)]
    for run in runs:
        for epoch in run["history"]:
            epoch["seconds"] = 0.0
        run["final"]["seconds"] = run["final"]["wall_s"] = 0.0
    assert runs[0] == runs[1]
    other = train(_model(), splits, cfg, seed=4).history[0].train_loss
    assert other != runs[0]["history"][0]["train_loss"]


def test_test_split_is_evaluated_once_after_the_last_epoch(splits):
    model = _model()
    result = train(model, splits, _cfg(epochs=3), seed=0)
    assert [m.test_top1 is None for m in result.history] == [True, True, False]
    assert [m.test_loss is None for m in result.history] == [True, True, False]
    assert all(m.val_top1 is not None for m in result.history)
    # What the last epoch reports is the trained model's real test score.
    assert (result.final["test_loss"], result.final["test_top1"]) == pytest.approx(
        evaluate(model, splits["test"]))


def test_test_every_epoch_gives_per_epoch_test_curves(splits):
    once = train(_model(), splits, _cfg(epochs=3), seed=0)
    every = train(_model(), splits, _cfg(epochs=3, test_every_epoch=True), seed=0)
    assert all(m.test_top1 is not None for m in every.history)
    # Evaluating does not touch the training: both runs train identically.
    assert [m.train_loss for m in every.history] == [m.train_loss for m in once.history]
    assert every.final["test_top1"] == once.final["test_top1"]


def test_uint8_splits_train_exactly_as_float_splits():
    """Batches normalized as they are taken (then augmented) give the same training,
    bit for bit, as the float32 tensors normalized in advance."""
    cfg = DatasetConfig(name="synthetic", synthetic_shape=[3, 8, 8], synthetic_size=400)
    runs = []
    for keep_uint8 in (False, True):
        splits = load_splits(cfg, seed=0, keep_uint8=keep_uint8)
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
        result = train(model, splits, _cfg(epochs=2, augment=True, cutout=3), seed=0)
        runs.append((result, model.state_dict()))
    (floats, float_state), (raw, raw_state) = runs
    assert [_metric_values(m) for m in raw.history] == [_metric_values(m) for m in floats.history]
    assert all(torch.equal(raw_state[k], v) for k, v in float_state.items())


def _metric_values(m: EpochMetrics) -> tuple:
    return m.train_loss, m.train_top1, m.val_loss, m.val_top1, m.test_loss, m.test_top1


def test_nan_loss_raises(splits):
    with pytest.raises(TrainingError, match="nan.*epoch 1"):
        train(NaNNet(), splits, _cfg(epochs=2))


def test_epoch_callback_and_drop_path(splits):
    seen: list[EpochMetrics] = []
    model = _model()
    train(model, splits, _cfg(epochs=3, drop_path=0.3), epoch_callback=seen.append,
          eval_test=False)
    assert [m.epoch for m in seen] == [1, 2, 3]
    assert all(m.test_top1 is None and m.test_loss is None for m in seen)
    assert sorted(set(model.seen_drop_path)) == pytest.approx([0.0, 0.1, 0.2])
    assert model.drop_path_prob == 0.0


def test_l1_pulls_parameters_to_zero(splits):
    alpha = nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    start = alpha.detach().clone()
    model = _model()
    train(model, splits, _cfg(epochs=1), l1_params=[alpha], l1=0.1, extra_params_lr=0.01)
    # Used only through the L1 term: every entry moves toward 0 and none flips sign.
    assert torch.all(alpha.detach().abs() < start.abs())
    assert torch.equal(torch.sign(alpha.detach()), torch.sign(start))


def test_l1_params_inside_model_have_own_group(splits):
    """An alpha registered on the model (in one group only, or SGD refuses it) that the
    L1 term moves: its values are bit for bit the same with weight decay 0 and 0.1,
    while the weights are not.

    Fails if weight decay reaches the L1 group."""
    few = {name: dataclasses.replace(data, x=data.x[:128], y=data.y[:128], indices=None)
           for name, data in splits.items()}  # two steps: enough to move every weight
    out = {}
    for decay in (0.0, 0.1):
        model = _model()
        model.alpha = nn.Parameter(torch.tensor([1.0, -0.5]))
        train(model, few, _cfg(epochs=1, weight_decay=decay), l1_params=[model.alpha],
              l1=0.01, extra_params_lr=0.1)
        out[decay] = model
    assert not torch.equal(out[0.0].alpha, torch.tensor([1.0, -0.5]))  # it had a gradient
    assert torch.equal(out[0.1].alpha, out[0.0].alpha)
    assert not torch.equal(out[0.1].head.weight, out[0.0].head.weight)


def test_aux_head_is_used(splits):
    model = _model()
    before = model.aux.weight.detach().clone()
    train(model, splits, _cfg(epochs=1, aux_weight=0.4))
    assert not torch.equal(model.aux.weight.detach(), before)


def test_zero_epochs_only_evaluates(splits):
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    result = train(model, splits, _cfg(epochs=0))
    assert result.history == []
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    final = result.final
    assert final["train_loss"] is None and final["train_top1"] is None
    assert 0 <= final["val_top1"] <= 1 and 0 <= final["test_top1"] <= 1
    assert math.isfinite(final["val_loss"]) and "wall_s" in final
    assert (final["val_loss"], final["val_top1"]) == pytest.approx(evaluate(model, splits["val"]))


def test_lr_schedule():
    cfg = TrainConfig(lr=0.1, lr_min=0.01, warmup_epochs=1)
    assert lr_factor(cfg, 0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(cfg, 9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(cfg, 10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(cfg, 100, 100, 10) == pytest.approx(0.1)  # lr_min / lr


def test_two_windows_of_one_schedule_train_as_one_call(splits):
    """Epochs [0, 1) and then [1, 3) of a 3-epoch schedule use the learning rates of one
    3-epoch call, epoch for epoch; a window that does not fit is refused."""
    whole = train(_model(), splits, _cfg(epochs=3), seed=0)
    model = _model()
    first = train(model, splits, _cfg(epochs=1), seed=0, window=Window(0, 3))
    rest = train(model, splits, _cfg(epochs=2), seed=0, window=Window(1, 3))
    assert [m.lr for m in first.history + rest.history] == pytest.approx(
        [m.lr for m in whole.history])
    assert rest.history[0].lr == pytest.approx(0.05 * (1 + math.cos(math.pi / 3)) / 2)
    with pytest.raises(ValueError, match="2 epochs from 2 do not fit a schedule of 3"):
        train(_model(), splits, _cfg(epochs=2), window=Window(2, 3))


@pytest.mark.parametrize("batch_size", [2000, 500])
def test_recalibrated_batchnorm_holds_the_average_batch_statistics(splits, batch_size):
    """One BatchNorm on the raw images: its running mean and variance become the mean of
    the per-batch means and unbiased variances over the train split (the whole split's
    exactly, with one batch), its momentum is restored, and nothing else moves."""
    model = nn.Sequential(nn.BatchNorm2d(1), nn.Flatten(), nn.Linear(64, 10))
    model[0].running_mean.fill_(5.0)
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k
               and "num_batches" not in k}
    setup = _setup(model, _cfg(epochs=1), "cpu", 0, (), 0.0, None, Window(0, 1))
    x = splits["train"].x
    recalibrate_batchnorm(model, splits["train"], batch_size, setup)
    batches = [x[i:i + batch_size] for i in range(0, len(x), batch_size)]
    assert len(batches) == (1 if batch_size == 2000 else 3)
    want_mean = torch.stack([b.mean() for b in batches]).mean()
    want_var = torch.stack([b.var() for b in batches]).mean()
    assert model[0].running_mean.item() == pytest.approx(want_mean.item(), rel=1e-5)
    assert model[0].running_var.item() == pytest.approx(want_var.item(), rel=1e-5)
    assert model[0].momentum == 0.1
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())


def test_bn_recalibrate_evaluates_after_and_records_before(splits):
    plain = train(_model(), splits, _cfg(epochs=2), seed=0)
    fixed = train(_model(), splits, _cfg(epochs=2, bn_recalibrate=True), seed=0)
    assert plain.final["val_top1_before_recalibration"] is None
    # The same training; only the statistics, and so the evaluation, changed.
    assert fixed.final["val_top1_before_recalibration"] == plain.final["val_top1"]
    assert fixed.final["train_loss"] == plain.final["train_loss"]
    assert [m.val_top1_before_recalibration for m in fixed.history][:-1] == [None]


# ------------------------------------------------------------------------------ CUDA options

@pytest.mark.parametrize("device, amp, amp_dtype, bf16_supported, want", [
    ("cpu", True, "auto", True, None),               # mixed precision is for CUDA only
    ("cuda", False, "auto", True, None),
    ("cuda", True, "auto", True, torch.bfloat16),
    ("cuda", True, "auto", False, torch.float16),    # pre-Ampere: float16 + grad scaler
    ("cuda", True, "float16", True, torch.float16),
    ("cuda", True, "bfloat16", True, torch.bfloat16),
])
def test_autocast_dtype(device, amp, amp_dtype, bf16_supported, want):
    cfg = TrainConfig(amp=amp, amp_dtype=amp_dtype)
    assert autocast_dtype(device, cfg, bf16_supported) == want


def test_bfloat16_on_a_gpu_without_it_is_refused():
    with pytest.raises(TrainingError, match="bfloat16"):
        autocast_dtype("cuda", TrainConfig(amp_dtype="bfloat16"), bf16_supported=False)


def test_grad_scaler_step_is_the_float32_step(splits):
    """With a power-of-two scale, scaling the loss and unscaling the gradients is exact,
    so the float16 path's update equals the plain one, bit for bit, even with gradient
    clipping active: the gradients are unscaled before they are clipped."""
    cfg = _cfg(grad_clip=0.05)
    x, y = splits["train"].x[:64], splits["train"].y[:64]
    states = []
    for scaled in (False, True):
        model = _model()
        setup = _setup(model, cfg, "cpu", 0, (), 0.0, None, Window(0, cfg.epochs))
        if scaled:
            setup = dataclasses.replace(setup, scaler=torch.amp.GradScaler("cpu",
                                                                           init_scale=2.0 ** 12))
        model.train()
        for _ in range(3):
            _step(x, y, cfg, setup)
        states.append(model.state_dict())
    assert all(torch.equal(states[1][k], v) for k, v in states[0].items())


def test_cudnn_benchmark_is_on_for_cuda_and_restored():
    before = torch.backends.cudnn.benchmark
    assert before is False
    with cudnn_benchmark(torch.device("cuda")):
        assert torch.backends.cudnn.benchmark is True
    assert torch.backends.cudnn.benchmark is before
    with cudnn_benchmark(torch.device("cpu")):
        assert torch.backends.cudnn.benchmark is before


def test_cpu_training_is_float32_and_never_compiled(splits):
    model = _model()
    cfg = _cfg(amp=True, compile=True)
    assert _training_forward(model, cfg, torch.device("cpu")) is model
    result = train(model, splits, _cfg(epochs=1, amp=True, compile=True), seed=0)
    assert result.final["precision"] == "float32"


def test_compile_on_cuda_wraps_the_model_unless_drop_path_is_on():
    model = _model()
    compiled = _training_forward(model, _cfg(compile=True), torch.device("cuda"))
    assert compiled is not model and compiled._orig_mod is model  # compiled lazily
    with pytest.raises(ValueError, match="drop_path"):
        _training_forward(model, _cfg(compile=True, drop_path=0.2), torch.device("cuda"))
