"""The nn.Module built from a ModelDesc, and weights in and out.

Module names are part of the on-disk format (state_dict keys), and grow.py maps them when
a candidate becomes a node:

    stem.*                               cells.{i}.pre0.* / cells.{i}.pre1.*
    cells.{i}.nodes.{k}.edges.{j}.*      cells.{i}.proj.conv.weight  (C, nodes*C, 1, 1)
    cells.{i}.candidate.groups.{g}.ops.{op}.*  (grouped, see candidate.py)
    cells.{i}.candidate.alpha            (one per (input, op))
    aux_head.*                           classifier.*
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch
from torch import nn

from petrinas.errors import InputError, UntrustedFileError, first_line, plain
from petrinas.fileio import write_bytes_atomic
from petrinas.model_desc.candidate import Candidate
from petrinas.model_desc.desc import (CellDesc, ModelDesc, edge_stride,
                                     no_such_model_folder)
from petrinas.model_desc.ops import make_op


def drop_path(x: torch.Tensor, prob: float) -> torch.Tensor:
    """Zero whole examples with probability `prob`, rescaling the rest (DARTS style)."""
    keep = 1.0 - prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


class Node(nn.Module):
    def __init__(self, edges, channels: int, reduction: bool):
        super().__init__()
        self.inputs = [edge.input for edge in edges]
        self.edges = nn.ModuleList(
            make_op(edge.op.name, channels, channels, edge_stride(reduction, edge.input))
            for edge in edges)

    def forward(self, states: list[torch.Tensor], drop_prob: float) -> torch.Tensor:
        total = 0
        for state, op in zip(self.inputs, self.edges):
            out = op(states[state])
            if drop_prob > 0 and self.training and not isinstance(op, nn.Identity):
                out = drop_path(out, drop_prob)
            total = total + out
        return total


class Cell(nn.Module):
    def __init__(self, desc: CellDesc, c_prev_prev: int, c_prev: int, channels: int,
                 reduction: bool, reduction_prev: bool):
        super().__init__()
        if reduction_prev:  # s0 has twice the resolution of s1
            self.pre0 = make_op("factorized_reduce", c_prev_prev, channels, 2)
        else:
            self.pre0 = make_op("relu_conv_bn_1x1", c_prev_prev, channels, 1)
        self.pre1 = make_op("relu_conv_bn_1x1", c_prev, channels, 1)
        self.nodes = nn.ModuleList(Node(n.edges, channels, reduction) for n in desc.nodes)
        self.proj = make_op("cell_projection", channels * len(desc.nodes), channels, 1)
        self.candidate = (Candidate(desc.candidate, channels, reduction)
                          if desc.candidate is not None else None)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for node in self.nodes:
            states.append(node(states, drop_prob))
        out = self.proj(torch.cat(states[2:], dim=1))
        if self.candidate is not None and self.training and torch.is_grad_enabled():
            # Its value is exactly zero: it only carries a gradient, so where none is
            # taken (eval mode, no_grad: every evaluation) it is not run at all.
            out = out + self.candidate(states)
        return out


class AuxHead(nn.Module):
    """Auxiliary classifier; adaptive pooling so it also fits tiny inputs."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128), nn.ReLU(), nn.Flatten())
        self.classifier = nn.Linear(128 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class CellNetwork(nn.Module):
    """Stem -> cells -> global pool -> linear classifier."""

    def __init__(self, desc: ModelDesc):
        super().__init__()
        self.desc = desc
        self.drop_path_prob = 0.0
        c_stem = desc.stem_multiplier * desc.init_channels
        self.stem = make_op("stem", desc.input_shape[0], c_stem, 1)
        self.aux_index = aux_cell_index(desc) if desc.aux_head else -1
        cells, c_pp, c_p, reduction_prev, c_aux = [], c_stem, c_stem, False, c_stem
        for i, channels in enumerate(desc.cell_channels()):
            reduction = i in desc.reduction_indices
            cells.append(Cell(desc.cell_desc(i), c_pp, c_p, channels, reduction, reduction_prev))
            c_pp, c_p, reduction_prev = c_p, channels, reduction
            if i == self.aux_index:
                c_aux = channels
        self.cells = nn.ModuleList(cells)
        self.aux_head = AuxHead(c_aux, desc.num_classes) if desc.aux_head else None
        self.pool = make_op("global_avg_pool", c_p, c_p, 1)
        self.classifier = make_op("linear_classifier", c_p, desc.num_classes, 1)

    def forward(self, x: torch.Tensor, with_aux: bool = False):
        s0 = s1 = self.stem(x)
        aux_logits = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_index and with_aux:
                aux_logits = self.aux_head(s1)
        logits = self.classifier(self.pool(s1))
        return (logits, aux_logits) if with_aux else logits


def aux_cell_index(desc: ModelDesc) -> int:
    return min(2 * desc.cells // 3, desc.cells - 1)


def build_model(desc: ModelDesc) -> CellNetwork:
    """The nn.Module of a description, freshly initialized."""
    return CellNetwork(desc)


# --------------------------------------------------------------------------- weights

def save_weights(state_dict: dict, path: str | Path) -> None:
    """torch.save through a temp file and a rename, so a reader never sees half a file."""
    write_bytes_atomic(path, weights_to_bytes(state_dict))


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state_dict, loaded with weights_only=True: a pickle payload is refused, not run."""
    return weights_from_bytes(Path(path).read_bytes(), str(path))


def weights_from_bytes(blob: bytes, origin: str = "weights") -> dict[str, torch.Tensor]:
    try:
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UntrustedFileError(f"{origin}: refused to load (not plain tensors: "
                                 f"{first_line(exc, 'unsafe content')})") from None
    except Exception as exc:  # noqa: BLE001 — a cut-off file raises EOFError, ValueError,
        # KeyError or RuntimeError from torch's readers, depending on where it was cut
        detail = ": ".join(filter(None, (type(exc).__name__, first_line(exc)))).splitlines()
        raise InputError(f"{origin}: cannot load the weights, the file is truncated or "
                         f"damaged ({detail[0]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise UntrustedFileError(f"{origin}: not a state_dict of tensors")
    return state


def weights_to_bytes(state_dict: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buffer)
    return buffer.getvalue()


def load_model(path: str | Path) -> CellNetwork:
    """The trained module of a trial, gallery or eval folder, in eval mode.

    `path` is the folder or its desc.yaml; the weights.pt beside it is loaded."""
    path = Path(path)
    desc_path = path / "desc.yaml" if path.is_dir() else path
    if not desc_path.is_file():
        folder = path if path.suffix != ".yaml" else path.parent
        raise FileNotFoundError(str(no_such_model_folder(folder)))
    model = build_model(ModelDesc.load(desc_path))
    weights = desc_path.parent / "weights.pt"
    state = load_weights(weights)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # another model's weights
        # torch's first line is a header ("Error(s) in loading state_dict for ..."), the
        # second the first fault (missing keys, a size mismatch), often very long
        lines = [line.strip() for line in plain(str(exc)).strip().splitlines()] or [""]
        detail = lines[min(1, len(lines) - 1)]
        detail = detail if len(detail) <= 160 else detail[:159] + "…"
        raise InputError(f"{weights}: cannot load into the model of {desc_path} "
                         f"({detail})") from None
    return model.eval()

