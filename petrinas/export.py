"""Export a trained model folder to a file that loads with torch alone.

`export_folder(DIR)` reads DIR/desc.yaml + DIR/weights.pt (a gallery or eval model
folder) and writes into DIR/export/:

* `model.pt2`: the eval-mode network as a `torch.export` ExportedProgram;
* `desc.yaml`: a copy of the description it was built from;
* `export.json` and `README.txt`: input shape, normalization, classes, how to load it.

Why torch.export and not TorchScript: our networks are plain tensor code with Python
control flow that depends only on the description (fixed at build time), so
`torch.export` captures them whole, with a dynamic batch dimension, and `torch.export.load`
needs neither petrinas nor any of its classes. `torch.jit.trace` is deprecated in the
torch we target, fixes the batch size it saw, and was about three times slower to trace
the same network here. The exported program is checked against the petrinas module on
a random batch before anything is written.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from petrinas.errors import InputError, first_line
from petrinas.fileio import write_bytes_atomic, write_text_atomic
from petrinas.model_desc.desc import ModelDesc, no_such_model_folder
from petrinas.model_desc.model import CellNetwork, load_model

ARTIFACT = "model.pt2"
EXPORT_DIR = "export"
MAX_BATCH = 4096          # upper bound of the exported dynamic batch dimension
CHECK_TOLERANCE = 1e-5    # max |exported - eager| on the check batch
# Batch 2, not 1: torch.export specializes a dimension that is 1 in the example input to
# the constant 1, which would make the batch size static.
EXAMPLE_BATCH = 2

NORMALIZATION_NOTE = (
    "Inputs must be normalized exactly like petrinas.data.load_dataset returns them: "
    "float32, per channel (x - mean) / std, with mean and std computed over the dataset's "
    "train+val pool (and images resized as the dataset config says). Raw pixel values "
    "give meaningless predictions.")
LOAD_SNIPPET = """\
import torch
program = torch.export.load("model.pt2")   # no petrinas import needed
model = program.module()                   # inference behaviour is baked in:
                                           # do not call model.train()
with torch.no_grad():
    logits = model(x)                      # x: N x {c} x {h} x {w} float32, normalized
predicted = logits.argmax(dim=1)"""


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    artifact: Path
    max_abs_diff: float     # exported vs. eager petrinas output on the check batch


def export_folder(model_dir: str | Path, out_dir: str | Path | None = None) -> ExportResult:
    """Export the model in `model_dir` (desc.yaml + weights.pt) to `out_dir`
    (default `model_dir/export`). Raises InputError for a missing folder or file."""
    model_dir = Path(model_dir)
    desc_path = _require_inputs(model_dir)
    out = Path(out_dir) if out_dir is not None else model_dir / EXPORT_DIR
    model = _load(model_dir)
    program = export_model(model, model.desc.input_shape)
    diff = _check(program, model, model.desc.input_shape)
    write_bytes_atomic(out / ARTIFACT, _program_bytes(program))
    write_bytes_atomic(out / "desc.yaml", desc_path.read_bytes())
    info = export_info(model.desc, model_dir, diff)
    write_text_atomic(out / "export.json", json.dumps(info, indent=1) + "\n")
    write_text_atomic(out / "README.txt", readme_text(info))
    return ExportResult(out_dir=out, artifact=out / ARTIFACT, max_abs_diff=diff)


def export_model(model: torch.nn.Module, input_shape: tuple[int, int, int]
                 ) -> torch.export.ExportedProgram:
    """The eval-mode `model` as an ExportedProgram for N x C x H x W inputs, N dynamic."""
    model = model.eval()
    example = torch.zeros(EXAMPLE_BATCH, *input_shape)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with torch.no_grad():
        return torch.export.export(model, (example,), dynamic_shapes=({0: batch},))


def _require_inputs(model_dir: Path) -> Path:
    """The folder's desc.yaml, once it and weights.pt are known to exist."""
    if not model_dir.is_dir():
        raise no_such_model_folder(model_dir)
    for path in (model_dir / "desc.yaml", model_dir / "weights.pt"):
        if not path.is_file():
            raise InputError(f"{path}: missing (a model folder holds desc.yaml and "
                             "weights.pt)")
    return model_dir / "desc.yaml"


def _load(model_dir: Path) -> CellNetwork:
    """The folder's model in eval mode; a description or weights that cannot be used
    are bad input (exit 2), not a crash."""
    try:
        return load_model(model_dir)
    except ValueError as exc:  # a description that builds no model; weights: InputError
        first = first_line(exc, type(exc).__name__)
        raise InputError(f"{model_dir}: cannot load the model: {first}") from None


def _check(program: torch.export.ExportedProgram, model: torch.nn.Module,
           input_shape: tuple[int, int, int]) -> float:
    """Max |exported - eager| on a random batch; a mismatch is a bug, not bad input."""
    x = torch.randn(3, *input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (program.module()(x) - model(x)).abs().max().item()
    if not diff <= CHECK_TOLERANCE:  # also catches NaN
        raise RuntimeError(f"exported model differs from the original by {diff:g}")
    return diff


def _program_bytes(program: torch.export.ExportedProgram) -> bytes:
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def export_info(desc: ModelDesc, model_dir: Path, max_abs_diff: float) -> dict:
    """What export.json records: enough to feed the model without petrinas."""
    c, h, w = desc.input_shape
    return {
        "artifact": ARTIFACT,
        "format": "torch.export ExportedProgram (torch.export.save)",
        "torch_version": torch.__version__,
        "source": str(model_dir),
        "dataset": _dataset_name(model_dir),
        "input_shape": [1, c, h, w],
        "batch": f"dynamic, 1..{MAX_BATCH}",
        "input_dtype": "float32",
        "normalization": NORMALIZATION_NOTE,
        "output": f"logits, N x {desc.num_classes} (no softmax)",
        "num_classes": desc.num_classes,
        "arch_hash": desc.arch_hash(),
        "check_max_abs_diff": max_abs_diff,
        "load": LOAD_SNIPPET.format(c=c, h=h, w=w),
    }


def _dataset_name(model_dir: Path) -> str | None:
    """The dataset of the run the folder belongs to, from the nearest config.yaml above
    it (gallery/<id>/ and eval folders sit a level or two below the run directory)."""
    for parent in list(model_dir.resolve().parents)[:3]:
        try:
            data = yaml.safe_load((parent / "config.yaml").read_text())
        except (OSError, yaml.YAMLError):
            continue
        name = data.get("dataset", {}).get("name") if isinstance(data, dict) else None
        if isinstance(name, str):
            return name
    return None


def readme_text(info: dict) -> str:
    n, c, h, w = info["input_shape"]
    dataset = f" ({info['dataset']})" if info.get("dataset") else ""
    return "\n".join([
        f"{info['artifact']}: a petrinas model{dataset} exported with torch.export.",
        "",
        f"Input:  float32 tensor of shape {n} x {c} x {h} x {w} (any batch size N from 1 "
        f"to {MAX_BATCH}; C, H, W are fixed).",
        f"Output: {info['output']}; {info['num_classes']} classes.",
        "",
        info["normalization"],
        "",
        f"Load it with torch alone (saved with torch {info['torch_version']}; use the same "
        "version if you can: .pt2 files are not guaranteed to load across versions):",
        "",
        info["load"],
        "",
        "desc.yaml is the architecture it was built from; export.json holds the same "
        "facts as this file.",
        "",
    ])
