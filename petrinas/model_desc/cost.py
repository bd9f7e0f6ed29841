"""What a model costs: multiply-accumulates (MACs), parameters and, optionally, latency.

MACs come from torch's own FlopCounterMode, which counts the matmul-like ops (conv,
linear, matmul, ...) and ignores cheap elementwise ones (BN, ReLU, pooling, additions).
It counts 2 flops per multiply-add, so MACs = flops // 2. Counts are per example.

`counter="tensorwatch"` counts with the optional `tensorwatch` package instead: its
ModelStats' `Flops`, which counts a conv's or linear layer's multiply-adds once each (as
torch does) and also one per element of BN, ReLU and pooling, so it comes out above
torch's count (by 26-35 % on the digits seed models, measured in tests/test_cost.py).
It is not the number archai's Petridish puts on its cost axis: that is the same
ModelStats' `MAdd`, which counts a multiply and an add separately (about twice the
MACs, plus more per BN and pooling element). On the 1-cell, 1-node digits seed: 16,690
MACs here, 22,535 tensorwatch Flops, 40,090 tensorwatch MAdd.
"""

from __future__ import annotations

import itertools
import statistics
import time
from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

WARMUP_PASSES = 3


def cost(model: nn.Module, input_shape: Sequence[int], *, latency: bool = False,
         device: str | torch.device = "cpu", repeats: int = 20,
         counter: str = "torch") -> dict:
    """{"macs": int, "params": int} of one forward pass for one example, plus
    "latency_ms" (median of `repeats` timed passes on `device`) when `latency` is set.

    `input_shape` is C x H x W (a batch of 1 is added) or N x C x H x W; with N > 1 the
    MACs are divided by N and the latency is that of the whole batch. The model runs in
    eval mode without gradients; its training mode and device are restored afterwards.
    `counter` is "torch" (FlopCounterMode) or "tensorwatch" (see the module docstring).
    """
    if counter not in COUNTERS:
        raise ValueError(f"counter must be one of {', '.join(COUNTERS)}, got {counter!r}")
    shape = _batched_shape(input_shape)
    device = torch.device(device)
    result: dict = {"params": count_params(model)}
    with _eval_on(model, device):
        x = torch.randn(shape, device=device)
        result["macs"] = COUNTERS[counter](model, x) // shape[0]
        if latency:
            result["latency_ms"] = _median_latency_ms(model, x, device, repeats)
    return result


def count_params(model: nn.Module) -> int:
    """Number of parameters (elements), trainable or not."""
    return sum(p.numel() for p in model.parameters())


def _count_macs_tensorwatch(model: nn.Module, x: torch.Tensor) -> int:
    try:
        import tensorwatch
    except ImportError:
        raise ImportError("counter='tensorwatch' needs the optional tensorwatch package: "
                          "pip install petrinas[tensorwatch]") from None
    # `tensorwatch.model_stats` renders a DataFrame of formatted strings (with an API that
    # newer pandas removed); its ModelStats object holds the same totals as numbers.
    # clone_model=True: tensorwatch attaches hooks and may change modes on its copy only.
    stats = tensorwatch.ModelStats(model, list(x.shape), clone_model=True)
    return int(stats.Flops)


def _batched_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        return (1,) + shape
    if len(shape) == 4 and all(s >= 1 for s in shape):
        return shape
    raise ValueError(f"input_shape must be C x H x W or N x C x H x W with positive sizes, "
                     f"got {tuple(input_shape)}")


def _count_macs(model: nn.Module, x: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    return int(counter.get_total_flops()) // 2


COUNTERS = {"torch": _count_macs, "tensorwatch": _count_macs_tensorwatch}


def _median_latency_ms(model: nn.Module, x: torch.Tensor, device: torch.device,
                       repeats: int) -> float:
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    # Warm-up passes pay for lazy initialization (cuDNN autotuning, allocator growth).
    for _ in range(WARMUP_PASSES):
        model(x)
    times = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        model(x)
        _synchronize(device)  # CUDA kernels run asynchronously; wait for them to finish
        times.append((time.perf_counter() - start) * 1000.0)
    return float(statistics.median(times))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def _eval_on(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Eval mode, no grad, on `device`; the previous modes and device are restored."""
    # Per module: a model may hold frozen submodules (BN in eval) while it trains.
    modes = [(module, module.training) for module in model.modules()]
    original = _module_device(model)
    moved = original is not None and original != device
    try:
        if moved:
            model.to(device)
        model.eval()
        with torch.no_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training
        if moved:
            model.to(original)


def _module_device(model: nn.Module) -> torch.device | None:
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return None if tensor is None else tensor.device
