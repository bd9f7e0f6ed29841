"""One training loop for every phase: seed, search, post-train and eval.

Batches are sliced out of tensors that live on the device (no DataLoader), losses and
accuracies are summed on the device, and the host reads them once per epoch, so a CUDA
step never waits on the CPU. Splits may hold uint8 pixels (`TensorData.mean`/`std` set):
each batch is normalized as it is taken, before augmentation, exactly as the float32
tensors were.

Learning rate: linear warmup over `warmup_epochs`, then cosine from `lr` to `lr_min`,
both updated every step (not every epoch) so short runs get a smooth schedule. A phase
may be a window of a longer schedule (`Window`): a grown child's post-training can go on
where its search phase left off instead of restarting at the peak.

On CUDA: cudnn.benchmark picks the fastest convolution algorithms for the job's fixed
shapes (so CUDA runs are not bit for bit reproducible); mixed precision is bfloat16 where
the GPU supports it, else float16 with a gradient scaler; channels_last; and, with
`compile`, the training steps run a torch.compile'd model; with `cuda_graphs`, the
training step is captured once as a CUDA graph and replayed (step.py). Evaluation runs
the model eagerly: it is a few per cent of the work, and a second set of compiled graphs
(eval mode, other batch sizes) would cost more compile time than it saves.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from petrinas.config import TrainConfig
from petrinas.errors import TrainingError
from petrinas.data import TensorData, augment_batch
from petrinas.train.step import CudaGraph, EagerStep, GraphedStep

log = logging.getLogger(__name__)

CROP_PADDING = 4


@dataclass
class EpochMetrics:
    """One epoch. `epoch` counts completed epochs (1-based); `lr` is the rate at its start.

    Accuracies are fractions in [0, 1]. train_loss is the label-smoothed cross entropy of
    the main head (no aux or L1 terms), averaged over the epoch while the weights moved.
    """
    epoch: int
    lr: float
    train_loss: float
    train_top1: float
    val_loss: float
    val_top1: float
    test_loss: float | None
    test_top1: float | None
    seconds: float
    # With bn_recalibrate, the last epoch's validation accuracy before the BatchNorm
    # statistics were re-estimated (val_top1 is after): what the recalibration bought.
    val_top1_before_recalibration: float | None = None
    # The training pass alone: `seconds` less the evaluation (and recalibration).
    train_seconds: float | None = None


@dataclass
class TrainResult:
    history: list[EpochMetrics]
    final: dict  # asdict(last epoch) plus 'wall_s'

    def to_dict(self) -> dict:
        """Plain lists, dicts and numbers, ready for JSON."""
        return {"history": [asdict(m) for m in self.history], "final": dict(self.final)}


# ------------------------------------------------------------------------- evaluation

def autocast_dtype(device_type: str, cfg: TrainConfig, bf16_supported: bool
                   ) -> torch.dtype | None:
    """The dtype the forward passes autocast to; None: float32. Mixed precision is for
    CUDA only. bfloat16 needs a GPU that has it (Ampere and later); without it, "auto"
    falls back to float16, which needs a gradient scaler (see `_setup`)."""
    if not cfg.amp or device_type != "cuda":
        return None
    if cfg.amp_dtype == "float16":
        return torch.float16
    if bf16_supported:
        return torch.bfloat16
    if cfg.amp_dtype == "bfloat16":
        raise TrainingError("amp_dtype: bfloat16 was asked for, but this GPU does not "
                            "support it; use auto or float16")
    return torch.float16


def _autocast(device: torch.device, dtype: torch.dtype | None
              ) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def cudnn_benchmark(device: torch.device) -> Iterator[None]:
    """cudnn.benchmark on for the block on CUDA, restored after: a job's shapes are fixed,
    so timing the algorithms once pays for itself within the first steps. (The flag is
    per process, and a Ray worker process runs many jobs.)"""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = before or device.type == "cuda"
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def _prepare_input(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    if channels_last and x.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


@torch.no_grad()
def evaluate(model: nn.Module, data: TensorData, *, batch_size: int = 256,
             device: str | torch.device = "cpu", amp_dtype: torch.dtype | None = None,
             channels_last: bool = False) -> tuple[float, float]:
    """(mean cross-entropy loss, top-1 fraction) of `model` on `data`, in eval mode.

    `amp_dtype`: autocast to it (None: float32). `channels_last` only applies on CUDA.
    """
    device = torch.device(device)
    model.eval()
    data = data.to(device)  # a no-op for the trainer's splits, which are there already
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    for start in range(0, len(data), batch_size):
        x = _prepare_input(data.batch(slice(start, start + batch_size)), channels_last)
        y = data.y[start:start + batch_size]
        with _autocast(device, amp_dtype):
            logits = model(x)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(dim=1) == y).sum()
    n = max(len(data), 1)
    loss, hits = torch.stack([loss_sum, correct.to(loss_sum.dtype)]).tolist()  # one sync
    return loss / n, hits / n


# --------------------------------------------------------------------------- schedule

@dataclass(frozen=True)
class Window:
    """The part of a schedule one call to `train` runs: epochs [start, start + epochs of
    the phase) of a schedule `total` epochs long. Warm-up counts from the schedule's
    start, so a window that starts later has none."""
    start: int
    total: int


def lr_factor(cfg: TrainConfig, step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning rate at `step` relative to cfg.lr: linear warmup, then cosine to lr_min."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    floor = cfg.lr_min / cfg.lr
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _make_optimizer(model: nn.Module, cfg: TrainConfig, l1_params: Sequence[torch.Tensor],
                    extra_params_lr: float | None, fused: bool = False) -> torch.optim.SGD:
    """SGD with the L1-regularized parameters (architecture alphas) in their own group.

    The alphas get no weight decay: L1 is their regularizer, and decay would fight it.
    `fused`: one kernel for the whole update, which reads a learning rate held in a
    device tensor (what a captured step needs; step.py).
    """
    l1_ids = {id(p) for p in l1_params}
    weights = [p for p in model.parameters() if p.requires_grad and id(p) not in l1_ids]
    groups = [{"params": weights}]
    if l1_params:
        groups.append({"params": list(l1_params), "weight_decay": 0.0,
                       "lr": extra_params_lr if extra_params_lr is not None else cfg.lr})
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay,
                           nesterov=cfg.nesterov and cfg.momentum > 0,  # SGD rejects the rest
                           fused=fused or None)


def _batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Slices covering all n examples; a lone last example joins the previous batch,
    because BatchNorm cannot train on a batch of one."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    ends = starts[1:] + [n]
    return list(zip(starts, ends))


# ---------------------------------------------------------------------------- training

@dataclass
class _Setup:
    """What one call to `train` fixes before the first step."""
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    generator: torch.Generator
    optimizer: torch.optim.SGD
    base_lrs: list[float]
    params: list[torch.Tensor]
    l1_params: list[torch.Tensor]
    l1: float
    forward: nn.Module                          # what a training step calls
    window: Window                              # the part of the schedule it runs
    scaler: torch.amp.GradScaler | None = None  # float16 only
    step: EagerStep | GraphedStep | None = None  # runs one step (set after the rest)
    alpha_data: TensorData | None = None        # held out for the alphas' own steps
    alpha_step: EagerStep | None = None         # steps the alphas alone (alpha_data)

    @property
    def precision(self) -> str:
        return str(self.amp_dtype or torch.float32).removeprefix("torch.")


def train(model: nn.Module, splits: dict[str, TensorData], cfg: TrainConfig, *,
          device: str | torch.device = "cpu", seed: int = 0,
          l1_params: Sequence[torch.Tensor] = (), l1: float = 0.0,
          extra_params_lr: float | None = None,
          epoch_callback: Callable[[EpochMetrics], None] | None = None,
          cpu_threads: int | None = None, eval_test: bool = True,
          window: Window | None = None, graph: CudaGraph | None = None,
          alpha_data: TensorData | None = None) -> TrainResult:
    """Train `model` on splits["train"] for cfg.epochs, evaluating on "val" after every
    epoch and on "test" after the last one (every epoch with cfg.test_every_epoch).

    Deterministic for a given seed on the CPU. Raises TrainingError if the loss stops
    being finite, so a diverged run never yields a model. Leaves the model in eval mode.
    With cfg.epochs == 0 it only evaluates: `final` has val/test metrics, train ones None.
    `window`: the learning rate follows that part of a longer schedule (default: the
    whole schedule is this call's cfg.epochs). `graph`: what captures and replays the
    training step (default: CUDA graphs on CUDA with cfg.cuda_graphs, else none: eager);
    the tests run the graphed step's bookkeeping on the CPU through a stand-in.
    `alpha_data`: first-order DARTS. Each step of the weights on a training batch (the
    L1-regularized parameters left as they are) is followed by a step of those
    parameters alone, with the L1 term, on the next batch of `alpha_data`, which the
    weights never train on; each step clips only what it steps.
    """
    started = time.perf_counter()
    if cpu_threads:
        torch.set_num_threads(cpu_threads)
    torch.manual_seed(seed)
    if "train" not in splits or "val" not in splits:
        raise ValueError(f"train needs 'train' and 'val' splits, got {sorted(splits)}")
    window = window or Window(0, cfg.epochs)
    if window.start < 0 or window.start + cfg.epochs > window.total:
        raise ValueError(f"{cfg.epochs} epochs from {window.start} do not fit a schedule "
                         f"of {window.total}")
    setup = _setup(model, cfg, device, seed, l1_params, l1, extra_params_lr, window, graph)
    if alpha_data is not None:
        if not l1_params:
            raise ValueError("alpha_data: there are no L1-regularized parameters to step")
        if isinstance(setup.step, GraphedStep):
            raise ValueError("alpha_data: not with cuda_graphs (the alphas' steps are eager)")
        setup.alpha_data = alpha_data.to(setup.device)
        setup.alpha_step = EagerStep(lambda x, y: _step(x, y, cfg, setup, "alphas"),
                                     setup.optimizer, setup.base_lrs)
    on_device = {name: data.to(setup.device) for name, data in splits.items()
                 if name in ("train", "val") or (name == "test" and eval_test)}
    history: list[EpochMetrics] = []
    try:
        with cudnn_benchmark(setup.device):
            for epoch in range(cfg.epochs):
                metrics = _run_epoch(model, on_device, cfg, setup, epoch)
                history.append(metrics)
                if epoch_callback is not None:
                    epoch_callback(metrics)
            final = (asdict(history[-1]) if history
                     else _untrained_final(model, on_device, setup))
    finally:
        if hasattr(model, "drop_path_prob"):
            model.drop_path_prob = 0.0
        model.eval()
    final["wall_s"] = time.perf_counter() - started
    final["precision"] = setup.precision
    final["training_step"] = setup.step.summary()
    return TrainResult(history, final)


def _setup(model: nn.Module, cfg: TrainConfig, device: str | torch.device, seed: int,
           l1_params: Sequence[torch.Tensor], l1: float,
           extra_params_lr: float | None, window: Window,
           graph: CudaGraph | None = None) -> _Setup:
    device = torch.device(device)
    on_cuda = device.type == "cuda"
    channels_last = cfg.channels_last and on_cuda
    bf16 = on_cuda and torch.cuda.is_bf16_supported(including_emulation=False)
    amp_dtype = autocast_dtype(device.type, cfg, bf16)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    # float16's narrow range underflows small gradients: scale the loss up, and skip a
    # step whose scaled gradients overflowed. bfloat16 has float32's range: no scaler.
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
    eager_because = None
    if graph is None and cfg.cuda_graphs and on_cuda:
        if scaler is None:
            graph = CudaGraph(device)
        else:
            eager_because = ("float16: its gradient scaler reads an overflow flag on the "
                             "host every step, which a graph cannot")
            log.warning("cuda_graphs: %s; this phase trains eagerly", eager_because)
    # A captured step reads its learning rates from device tensors: SGD's fused CUDA
    # kernel does, its other forms read a host value. (On the CPU, where only the tests'
    # stand-in graphs run, the plain SGD takes the tensors as they are.)
    optimizer = _make_optimizer(model, cfg, l1_params, extra_params_lr,
                                fused=graph is not None and on_cuda)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    setup = _Setup(device, amp_dtype, channels_last, generator, optimizer,
                   [group["lr"] for group in optimizer.param_groups], params,
                   list(l1_params), l1, _training_forward(model, cfg, device), window,
                   scaler)
    setup.step = _training_step(model, cfg, setup, graph, eager_because)
    return setup


def _training_step(model: nn.Module, cfg: TrainConfig, setup: _Setup,
                   graph: CudaGraph | None, eager_because: str | None
                   ) -> EagerStep | GraphedStep:
    """What the loop calls for one step: `_step` run eagerly, or captured by `graph`."""
    def step(x: torch.Tensor, y: torch.Tensor):
        # With alpha_data the L1-regularized parameters take steps of their own.
        return _step(x, y, cfg, setup, "weights" if setup.alpha_data is not None else "all")

    if graph is None:
        return EagerStep(step, setup.optimizer, setup.base_lrs, eager_because)
    return GraphedStep(step, setup.optimizer, setup.base_lrs, graph, setup.device,
                       cfg.batch_size,
                       drop_rate=lambda: getattr(model, "drop_path_prob", 0.0))


def _training_forward(model: nn.Module, cfg: TrainConfig, device: torch.device) -> nn.Module:
    """The module a training step calls: `model`, or on CUDA with cfg.compile, `model`
    compiled. dynamic=False: one graph per batch shape (the full batch and the last),
    which stays well inside dynamo's recompile limit."""
    if not (cfg.compile and device.type == "cuda"):
        return model
    if cfg.drop_path > 0:  # a Python float on the model: a new value is a new graph
        raise ValueError("compile: not with drop_path > 0 (the drop rate changes every "
                         "epoch, which would recompile every epoch)")
    if cfg.cuda_graphs:
        raise ValueError("compile: not with cuda_graphs (each captures the step its own way)")
    return torch.compile(model, dynamic=False)


def _evaluate_splits(model: nn.Module, splits: dict[str, TensorData], setup: _Setup,
                     with_test: bool = True) -> dict[str, float | None]:
    out: dict[str, float | None] = {"test_loss": None, "test_top1": None}
    for name in ("val", "test") if with_test else ("val",):
        if name in splits:
            loss, top1 = evaluate(model, splits[name], device=setup.device,
                                  amp_dtype=setup.amp_dtype,
                                  channels_last=setup.channels_last)
            out[f"{name}_loss"], out[f"{name}_top1"] = loss, top1
    return out


def _untrained_final(model: nn.Module, splits: dict[str, TensorData], setup: _Setup) -> dict:
    started = time.perf_counter()
    evaluated = _evaluate_splits(model, splits, setup)
    return {"epoch": 0, "lr": None, "train_loss": None, "train_top1": None,
            "val_loss": evaluated["val_loss"], "val_top1": evaluated["val_top1"],
            "test_loss": evaluated["test_loss"], "test_top1": evaluated["test_top1"],
            "seconds": time.perf_counter() - started}


def _run_epoch(model: nn.Module, splits: dict[str, TensorData], cfg: TrainConfig,
               setup: _Setup, epoch: int) -> EpochMetrics:
    started = time.perf_counter()
    if hasattr(model, "drop_path_prob"):  # DARTS schedule: 0 in the first epoch, rising
        model.drop_path_prob = cfg.drop_path * epoch / cfg.epochs
    loss, objective, top1, lr = _train_one_epoch(model, splits["train"], cfg, setup, epoch)
    train_seconds = time.perf_counter() - started  # its .tolist() waited for the device
    if not math.isfinite(objective):
        raise TrainingError(f"loss became {objective} in epoch {epoch + 1}")
    last = epoch + 1 == cfg.epochs
    before = None
    if last and cfg.bn_recalibrate:
        before = _evaluate_splits(model, splits, setup, with_test=False)["val_top1"]
        recalibrate_batchnorm(model, splits["train"], cfg.batch_size, setup)
    # Only the last epoch's test accuracy is ever reported; on CIFAR-10 a test pass after
    # every epoch would add 10,000 images to every 45,000 trained.
    evaluated = _evaluate_splits(model, splits, setup, cfg.test_every_epoch or last)
    return EpochMetrics(epoch=epoch + 1, lr=lr, train_loss=loss, train_top1=top1,
                        val_loss=evaluated["val_loss"], val_top1=evaluated["val_top1"],
                        test_loss=evaluated["test_loss"], test_top1=evaluated["test_top1"],
                        seconds=time.perf_counter() - started,
                        val_top1_before_recalibration=before, train_seconds=train_seconds)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, data: TensorData, batch_size: int,
                          setup: _Setup) -> None:
    """Running mean and variance of every BatchNorm set to the average of its batch
    statistics over one pass of `data` (in batches of the training size, in order, no
    augmentation, no drop path) under the model's final weights."""
    norms = [m for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches, not an EMA
    drop = getattr(model, "drop_path_prob", None)
    if drop is not None:
        model.drop_path_prob = 0.0
    model.train()
    try:
        for start, end in _batch_bounds(len(data), batch_size):
            x = _prepare_input(data.batch(slice(start, end)), setup.channels_last)
            with _autocast(setup.device, setup.amp_dtype):
                model(x)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        if drop is not None:
            model.drop_path_prob = drop


def _train_one_epoch(model: nn.Module, data: TensorData, cfg: TrainConfig, setup: _Setup,
                     epoch: int) -> tuple[float, float, float, float]:
    """(mean loss, mean objective, top-1, lr at the first step) of one pass over `data`.

    The sums stay on the device; the single .tolist() at the end is the epoch's only sync.
    """
    model.train()
    n = len(data)
    bounds = _batch_bounds(n, cfg.batch_size)
    steps = len(bounds)
    total_steps, warmup_steps = setup.window.total * steps, cfg.warmup_epochs * steps
    first_step = (setup.window.start + epoch) * steps
    loss_sum = torch.zeros((), device=setup.device)
    objective_sum = torch.zeros((), device=setup.device)
    correct = torch.zeros((), device=setup.device, dtype=torch.int64)
    order = torch.randperm(n, generator=setup.generator, device=setup.device)
    alpha_batches = _alpha_batches(cfg, setup)
    first_lr = cfg.lr * lr_factor(cfg, first_step, total_steps, warmup_steps)
    for i, (start, end) in enumerate(bounds):
        factor = lr_factor(cfg, first_step + i, total_steps, warmup_steps)
        x, y = _training_batch(data, order[start:end], cfg, setup)
        loss, objective, logits = setup.step(x, y, factor)
        if alpha_batches:
            setup.alpha_step(*_training_batch(setup.alpha_data,
                                              alpha_batches[i % len(alpha_batches)],
                                              cfg, setup), factor)
        batch = end - start
        loss_sum += loss.detach() * batch
        objective_sum += objective.detach() * batch
        correct += (logits.detach().argmax(dim=1) == y).sum()
    loss_total, objective_total, hits = torch.stack(
        [loss_sum, objective_sum, correct.to(loss_sum.dtype)]).tolist()
    return loss_total / n, objective_total / n, hits / n, first_lr


def _alpha_batches(cfg: TrainConfig, setup: _Setup) -> list[torch.Tensor]:
    """This epoch's batches of the held-out alpha data, in a new order (none without
    it, and then the generator's stream is what it always was); the alphas cycle
    through them, one per weight step."""
    if setup.alpha_data is None:
        return []
    data = setup.alpha_data
    order = torch.randperm(len(data), generator=setup.generator, device=setup.device)
    return [order[start:end] for start, end in _batch_bounds(len(data), cfg.batch_size)]


def _training_batch(data: TensorData, index: torch.Tensor, cfg: TrainConfig,
                    setup: _Setup) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = data.batch(index), data.y[index]
    if cfg.augment or cfg.cutout > 0:
        x = augment_batch(x, crop_padding=CROP_PADDING if cfg.augment else 0,
                          flip=cfg.augment, cutout=cfg.cutout, generator=setup.generator)
    if setup.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y


def _step(x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, setup: _Setup,
          trains: str = "all") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One SGD step of every parameter (`trains` "all"), of all but the L1-regularized
    ones ("weights": no L1 term) or of those alone ("alphas"); returns (main-head loss,
    full objective, logits). A parameter left without a gradient is one SGD skips."""
    with _autocast(setup.device, setup.amp_dtype):
        if cfg.aux_weight > 0:
            logits, aux_logits = setup.forward(x, with_aux=True)
        else:
            logits, aux_logits = setup.forward(x), None
    logits = logits.float()  # the loss in float32 even under bf16 autocast
    loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
    objective = loss
    if aux_logits is not None:
        objective = objective + cfg.aux_weight * F.cross_entropy(
            aux_logits.float(), y, label_smoothing=cfg.label_smoothing)
    if setup.l1 > 0 and setup.l1_params and trains != "weights":
        objective = objective + setup.l1 * sum(p.abs().sum() for p in setup.l1_params)
    setup.optimizer.zero_grad(set_to_none=True)
    if setup.scaler is None:
        objective.backward()
    else:
        setup.scaler.scale(objective).backward()
        setup.scaler.unscale_(setup.optimizer)  # clip the true gradients, not scaled ones
    if trains != "all":
        alphas = {id(p) for p in setup.l1_params}
        for p in setup.params:
            if (id(p) in alphas) == (trains == "weights"):
                p.grad = None
    if cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(setup.params, cfg.grad_clip)
    if setup.scaler is None:
        setup.optimizer.step()
    else:
        setup.scaler.step(setup.optimizer)  # skipped if the gradients overflowed
        setup.scaler.update()
    return loss, objective, logits
