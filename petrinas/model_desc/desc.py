"""Plain descriptions of cell networks: structure only, never weights.

A `ModelDesc` is what a trial saves as desc.yaml (YAML in flow style, which is also
JSON) and what a remote job receives. Weights live in a state_dict file beside it. Files
are read with YAML's safe loader only, so a description with a Python tag is an error
and runs no code.

Inside a cell the states are numbered: 0 is s0 (the output of the cell two back), 1 is s1
(the previous cell), and 2 + k is node k. A node sums its edges; an edge applies one op
to one earlier state.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from petrinas.errors import InputError, UntrustedFileError
from petrinas.fileio import write_text_atomic

FORMAT_VERSION = 1
CELL_KINDS = ("normal", "reduce")
# libyaml's safe loader where PyYAML has it: the same safe subset of YAML, ten times
# faster (a long search reads a parent's description for every child).
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class OpDesc:
    """A primitive op, by its registry name (see ops.py)."""
    name: str


@dataclass(frozen=True)
class EdgeDesc:
    input: int          # state index within the cell: 0 = s0, 1 = s1, 2 + k = node k
    op: OpDesc

    def to_dict(self) -> dict:
        return {"input": self.input, "op": self.op.name}

    @classmethod
    def from_dict(cls, data: dict) -> "EdgeDesc":
        return cls(input=int(data["input"]), op=OpDesc(str(data["op"])))


@dataclass(frozen=True)
class NodeDesc:
    edges: tuple[EdgeDesc, ...]

    def to_dict(self) -> dict:
        return {"edges": [e.to_dict() for e in self.edges]}

    @classmethod
    def from_dict(cls, data: dict) -> "NodeDesc":
        return cls(edges=tuple(EdgeDesc.from_dict(e) for e in data["edges"]))


@dataclass(frozen=True)
class CandidateDesc:
    """The search-phase candidate node: one alpha-weighted op per (input, primitive).
    `affine`: whether the ops' BatchNorms have a learned scale and shift (see grow.py)."""
    inputs: tuple[int, ...]
    ops: tuple[str, ...]
    affine: bool = True

    @property
    def pairs(self) -> list[tuple[int, str]]:
        """(input, op) in the order of the alpha vector and the candidate's modules."""
        return [(i, op) for i in self.inputs for op in self.ops]

    def to_dict(self) -> dict:
        out = {"inputs": list(self.inputs), "ops": list(self.ops)}
        return out if self.affine else {**out, "affine": False}

    @classmethod
    def from_dict(cls, data: dict) -> "CandidateDesc":
        return cls(inputs=tuple(int(i) for i in data["inputs"]),
                   ops=tuple(str(o) for o in data["ops"]),
                   affine=bool(data.get("affine", True)))


@dataclass(frozen=True)
class CellDesc:
    nodes: tuple[NodeDesc, ...]
    candidate: CandidateDesc | None = None

    @property
    def n_states(self) -> int:
        return 2 + len(self.nodes)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"nodes": [n.to_dict() for n in self.nodes]}
        if self.candidate is not None:
            out["candidate"] = self.candidate.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "CellDesc":
        candidate = data.get("candidate")
        return cls(nodes=tuple(NodeDesc.from_dict(n) for n in data["nodes"]),
                   candidate=CandidateDesc.from_dict(candidate) if candidate else None)


@dataclass(frozen=True)
class ModelDesc:
    """A cell network: macro shape plus one normal and one reduction cell structure."""
    cells: int
    reductions: int
    init_channels: int
    stem_multiplier: int
    num_classes: int
    input_shape: tuple[int, int, int]          # C, H, W
    normal: CellDesc
    reduce: CellDesc
    aux_head: bool = False
    meta: dict = field(default_factory=dict, compare=False, hash=False)  # free-form notes

    def __post_init__(self) -> None:
        check_desc(self)

    @property
    def nodes(self) -> int:
        return len(self.normal.nodes)

    @property
    def reduction_indices(self) -> list[int]:
        return reduction_indices(self.cells, self.reductions)

    @property
    def used_kinds(self) -> tuple[str, ...]:
        """The cell kinds some cell of the model is built from. A model without
        reduction cells never runs its reduction cell: growth neither searches nor
        records anything for it, and `arch_hash` ignores it."""
        return CELL_KINDS if self.reductions else ("normal",)

    def cell_desc(self, index: int) -> CellDesc:
        return self.reduce if index in self.reduction_indices else self.normal

    def cell_channels(self) -> list[int]:
        """Output channels of every cell: doubled at each reduction cell."""
        channels, out = self.init_channels, []
        for i in range(self.cells):
            if i in self.reduction_indices:
                channels *= 2
            out.append(channels)
        return out

    def with_cells(self, normal: CellDesc, reduce: CellDesc) -> "ModelDesc":
        return replace(self, normal=normal, reduce=reduce)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        return {
            "format": FORMAT_VERSION,
            "cells": self.cells, "reductions": self.reductions,
            "init_channels": self.init_channels, "stem_multiplier": self.stem_multiplier,
            "num_classes": self.num_classes, "input_shape": list(self.input_shape),
            "aux_head": self.aux_head,
            "normal": self.normal.to_dict(), "reduce": self.reduce.to_dict(),
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "ModelDesc":
        try:
            return cls(cells=int(data["cells"]), reductions=int(data["reductions"]),
                       init_channels=int(data["init_channels"]),
                       stem_multiplier=int(data["stem_multiplier"]),
                       num_classes=int(data["num_classes"]),
                       input_shape=tuple(int(v) for v in data["input_shape"]),
                       normal=CellDesc.from_dict(data["normal"]),
                       reduce=CellDesc.from_dict(data["reduce"]),
                       aux_head=bool(data.get("aux_head", False)),
                       meta=dict(data.get("meta") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid model description: {exc!r}") from None

    def save(self, path: str | Path) -> None:
        """Write as YAML through a temp file and a rename, so readers never see half."""
        write_text_atomic(Path(path), _dump(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> "ModelDesc":
        text = Path(path).read_text()
        try:
            data = _safe_load(text)
        except yaml.constructor.ConstructorError as exc:
            raise UntrustedFileError(
                f"{path}: refuses to load a YAML tag ({str(exc.problem).strip()}); "
                "descriptions are plain data") from None
        except yaml.YAMLError as exc:
            raise ValueError(f"{path}: invalid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: not a model description")
        return cls.from_dict(data)

    def arch_hash(self) -> str:
        """Stable hash of the structure (not of `meta`), to spot duplicate architectures.

        A cell kind the model does not use counts as a copy of the normal cell (what
        seeds and growth store there), so two models that differ only there hash the
        same, and a model stored that way keeps the hash it always had."""
        data = self.to_dict()
        data.pop("meta")
        if "reduce" not in self.used_kinds:
            data["reduce"] = data["normal"]
        blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def no_such_model_folder(path: Path) -> InputError:
    """The error for a model folder that does not exist, naming those that do beside it."""
    parent = path.parent
    siblings = sorted(p.name for p in parent.iterdir()
                      if (p / "desc.yaml").is_file()) if parent.is_dir() else []
    hint = (f"; {parent} holds {', '.join(siblings)}" if siblings else "")
    return InputError(f"{path}: no such model folder{hint}")


def _dump(data: dict) -> str:
    """YAML in flow style, one top-level key per line, e.g.

        {"cells": 5,
         "normal": {"nodes": [{"edges": [{"input": 1, "op": "sep_conv_3x3"}]}]}}

    Flow-style YAML is JSON, so json's C encoder writes it: a long search writes a
    description for every trial, and they grow with every generation."""
    lines = [f"{json.dumps(key)}: {json.dumps(value)}" for key, value in data.items()]
    return "{" + ",\n ".join(lines) + "}\n"


def _safe_load(text: str) -> Any:
    """yaml.safe_load with libyaml's safe loader when there is one."""
    loader = SafeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def edge_stride(reduction: bool, state: int) -> int:
    """In a reduction cell the ops reading the cell inputs (s0, s1) halve the resolution."""
    return 2 if reduction and state < 2 else 1


def reduction_indices(cells: int, reductions: int) -> list[int]:
    return [cells * (i + 1) // (reductions + 1) for i in range(reductions)]


def check_desc(desc: ModelDesc) -> None:
    """Structural checks: macro shape and edges that only read earlier states."""
    if desc.reductions < 0 or desc.cells < 2 * desc.reductions + 1:
        raise ValueError(f"invalid macro shape: cells={desc.cells}, reductions="
                         f"{desc.reductions} (needs cells >= 2*reductions + 1)")
    if len(desc.normal.nodes) != len(desc.reduce.nodes):
        raise ValueError("normal and reduction cells must have the same number of nodes")
    for kind, cell in (("normal", desc.normal), ("reduce", desc.reduce)):
        if not cell.nodes:
            raise ValueError(f"{kind} cell has no nodes")
        for k, node in enumerate(cell.nodes):
            if not node.edges:
                raise ValueError(f"{kind} cell node {k} has no edges")
            for edge in node.edges:
                if not 0 <= edge.input < 2 + k:
                    raise ValueError(f"{kind} cell node {k} reads state {edge.input}, "
                                     f"which is not an earlier state")
        if cell.candidate is not None:
            bad = [i for i in cell.candidate.inputs if not 0 <= i < cell.n_states]
            if bad or not cell.candidate.ops:
                raise ValueError(f"{kind} cell candidate reads unknown states {bad}")

