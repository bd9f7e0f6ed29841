"""How the training loop runs one step: eagerly, or captured once as a CUDA graph and
replayed.

Both are callables `step(x, y, lr_factor) -> (loss, objective, logits)` around the same
step function (the trainer's `_step`: forward, loss, backward, clipping, SGD step), so
the loop has one shape whichever runs it.

Eagerly, Python launches every kernel of every step: a search-phase model launches
thousands per step, and on a fast GPU that host work, not the GPU, sets the pace.
Captured, the step's kernels are recorded once and each later step is one replay. A
replay runs the recorded kernels on the recorded memory, so everything that changes from
step to step lives in tensors the graph reads: the batch (copied into static input
tensors) and the learning rate of each parameter group (a float32 tensor on the device,
filled before each replay; SGD's fused kernel reads it there, so the optimizer step needs
no host value). What the graph cannot vary runs eagerly, through the same step function:
  * the first `warmup` steps of a phase, on the stream the capture will use: cudnn's
    autotuning, cuBLAS' handles and the momentum buffers are set up outside the capture;
  * a batch of another shape than the captured one (the last, partial batch of an
    epoch). Padding it to the full shape would need a mask inside every BatchNorm to
    keep the padding out of the batch statistics; one eager step per epoch costs less.
A model's drop-path rate is a Python float in its forward, so a phase whose rate changes
(drop_path > 0: every epoch) captures again when it does. float16's gradient scaler
reads its overflow flag on the host every step, so that precision stays eager; so does
a phase whose capture fails (the reason goes to the log, one line, and to `summary`).
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import torch

log = logging.getLogger(__name__)

Outputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]   # loss, objective, logits
StepFn = Callable[[torch.Tensor, torch.Tensor], Outputs]
WARMUP_STEPS = 3  # eager steps before the capture, as in PyTorch's CUDA graph examples


class EagerStep:
    """One step as Python launches it: the learning rates set as floats, then the step."""

    def __init__(self, step: StepFn, optimizer: torch.optim.Optimizer,
                 base_lrs: Sequence[float], reason: str | None = None):
        self.step, self.optimizer, self.base_lrs = step, optimizer, list(base_lrs)
        self.reason = reason  # why this phase is eager although graphs were asked for

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr_factor: float) -> Outputs:
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base_lr * lr_factor
        return self.step(x, y)

    def summary(self) -> dict:
        return {"mode": "eager"} if self.reason is None else {"mode": "eager",
                                                               "reason": self.reason}


class CudaGraph:
    """CUDA graphs on one side stream, which the warm-up steps use too: the libraries'
    per-stream state (cuBLAS handles, workspaces) exists before the capture needs it."""

    def __init__(self, device: torch.device):
        self.stream = torch.cuda.Stream(device)

    def warm(self, fn: Callable[[], Outputs]) -> Outputs:
        """`fn` run eagerly on the capture stream, ordered after and before the work of
        the current stream."""
        current = torch.cuda.current_stream()
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            out = fn()
        current.wait_stream(self.stream)
        return out

    def capture(self, fn: Callable[[], Outputs]) -> Callable[[], Outputs]:
        """`fn` recorded, not run; returns the replay, which runs it on the current stream
        and returns its outputs (the same tensors every time)."""
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            out = fn()

        def replay() -> Outputs:
            graph.replay()
            return out
        return replay


class GraphedStep:
    """The step captured once per phase (and per drop-path rate) and replayed; see the
    module's docstring. `graph` warms up, captures and replays (`CudaGraph`); batches of
    `batch_size` examples are captured, others run eagerly; `drop_rate` reads the
    model's current drop-path rate."""

    def __init__(self, step: StepFn, optimizer: torch.optim.Optimizer,
                 base_lrs: Sequence[float], graph: CudaGraph, device: torch.device,
                 batch_size: int, drop_rate: Callable[[], float] = lambda: 0.0,
                 warmup: int = WARMUP_STEPS):
        self.step, self.optimizer, self.graph = step, optimizer, graph
        self.base_lrs, self.batch_size = list(base_lrs), batch_size
        self.drop_rate, self.warmup = drop_rate, warmup
        self.lrs = [torch.zeros((), dtype=torch.float32, device=device) for _ in base_lrs]
        for group, lr in zip(optimizer.param_groups, self.lrs):
            group["lr"] = lr
        self.eager = EagerStep(step, optimizer, base_lrs)  # once the graph has failed
        self.static: tuple[torch.Tensor, torch.Tensor] | None = None
        self.replay: Callable[[], Outputs] | None = None
        self.captured_drop: float | None = None
        self.failed: str | None = None
        self.counts = {"warmup": 0, "captures": 0, "replayed": 0, "eager": 0}

    def __call__(self, x: torch.Tensor, y: torch.Tensor, lr_factor: float) -> Outputs:
        if self.failed is not None:
            self.counts["eager"] += 1
            return self.eager(x, y, lr_factor)
        for lr, base_lr in zip(self.lrs, self.base_lrs):
            lr.fill_(base_lr * lr_factor)   # a kernel with the value as its argument
        if len(x) != self.batch_size:
            self.counts["eager"] += 1
            return self.step(x, y)
        try:
            if self.counts["warmup"] < self.warmup:
                out = self.graph.warm(lambda: self.step(x, y))
                self.counts["warmup"] += 1
                return out
            replay = self._replay_for(x, y)
        except RuntimeError as exc:   # CUDA's errors, capture's included, are these
            self.failed = " ".join(str(exc).split())[:300]
            self.replay = self.static = None
            log.warning("cuda_graphs: warm-up or capture failed (%s); this phase trains "
                        "eagerly from here", self.failed)
            self.counts["eager"] += 1
            return self.eager(x, y, lr_factor)
        self.counts["replayed"] += 1
        return replay()

    def _replay_for(self, x: torch.Tensor, y: torch.Tensor) -> Callable[[], Outputs]:
        """The batch copied into the static inputs, and the graph to replay on them:
        captured now if there is none yet or the drop-path rate changed."""
        if self.static is None:
            self.static = (x.clone(), y.clone())  # the shapes and layout replayed
        static_x, static_y = self.static
        static_x.copy_(x)
        static_y.copy_(y)
        drop = self.drop_rate()
        if self.replay is None or drop != self.captured_drop:
            self.replay = None  # the old graph's memory goes back before the new capture
            self.replay = self.graph.capture(lambda: self.step(static_x, static_y))
            self.captured_drop = drop
            self.counts["captures"] += 1
        return self.replay

    def summary(self) -> dict:
        """What ran: steps warmed up, captures, replays, eager steps (batches of another
        size, or every step after a failure) and the failure's message."""
        out = {"mode": "cuda_graph", **self.counts}
        if self.failed is not None:
            out["failed"] = self.failed
        return out
