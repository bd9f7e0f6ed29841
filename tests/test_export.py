"""Tests for petrinas.export and scripts/export.py: the artifact loads and runs with torch
alone, in a process that never imports petrinas, and matches petrinas' own model."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from petrinas.cli import export_main
from petrinas.export import ARTIFACT
from petrinas.model_desc.desc import CellDesc, EdgeDesc, ModelDesc, NodeDesc, OpDesc
from petrinas.model_desc.model import build_model, load_model, save_weights

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: see conftest.py


def _cell(*nodes: list[tuple[int, str]]) -> CellDesc:
    return CellDesc(nodes=tuple(NodeDesc(tuple(EdgeDesc(i, OpDesc(op)) for i, op in n))
                                for n in nodes))


def _desc() -> ModelDesc:
    """Small but with a reduction cell and 3 nodes of mixed ops, so strided ops,
    factorized reduce, pools and skips all pass through the export."""
    normal = _cell([(1, "sep_conv_3x3"), (0, "skip_connect")],
                   [(2, "dil_conv_3x3"), (0, "max_pool_3x3")],
                   [(3, "mbconv_e2"), (1, "avg_pool_3x3"), (2, "skip_connect")])
    reduce = _cell([(1, "max_pool_3x3"), (0, "skip_connect")],
                   [(2, "sep_conv_3x3"), (1, "dil_conv_3x3")],
                   [(3, "skip_connect"), (0, "avg_pool_3x3")])
    return ModelDesc(cells=3, reductions=1, init_channels=4, stem_multiplier=1,
                     num_classes=5, input_shape=(2, 7, 7), normal=normal, reduce=reduce)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A model folder with random weights and non-trivial BatchNorm statistics, so the
    comparison would catch an export that ran BatchNorm in training mode."""
    folder = tmp_path_factory.mktemp("model")
    desc = _desc()
    torch.manual_seed(0)
    state = build_model(desc).state_dict()
    for key, value in state.items():
        if key.endswith("running_mean"):
            state[key] = torch.randn_like(value) * 0.5
        elif key.endswith("running_var"):
            state[key] = torch.rand_like(value) + 0.5
    desc.save(folder / "desc.yaml")
    save_weights(state, folder / "weights.pt")
    return folder


@pytest.fixture(scope="module")
def exported(model_dir: Path) -> Path:
    assert export_main([str(model_dir)]) == 0
    return model_dir / "export"


def _torch_only_env() -> dict[str, str]:
    """The environment minus any PYTHONPATH entry that would make the repo importable;
    one OpenMP thread, as in the `one_thread` fixture, for speed on a busy machine."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    paths = [p for p in env.pop("PYTHONPATH", "").split(os.pathsep)
             if p and Path(p).resolve() != REPO]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


# Runs in a fresh interpreter. petrinas is installed editable, so importing it would
# work; the point is that loading the artifact never does.
LOADER = textwrap.dedent("""
    import sys
    import torch
    program = torch.export.load(sys.argv[1])
    model = program.module()
    x = torch.load(sys.argv[2], weights_only=True)
    with torch.no_grad():
        torch.save({"out": model(x), "one": model(x[:1])}, sys.argv[3])
    assert "petrinas" not in sys.modules, sorted(m for m in sys.modules if "petrinas" in m)
    print("ok")
""")


def test_artifact_runs_without_petrinas(exported: Path, model_dir: Path, tmp_path: Path):
    x = torch.randn(4, *_desc().input_shape, generator=torch.Generator().manual_seed(1))
    torch.save(x, tmp_path / "x.pt")
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, str(exported / ARTIFACT), "x.pt", "out.pt"],
        cwd=tmp_path, env=_torch_only_env(), capture_output=True, text=True,
        timeout=600)  # only a guard against a hang
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    with torch.no_grad():
        want = load_model(model_dir)(x)
    assert got["out"].shape == (4, 5)
    assert (got["out"] - want).abs().max().item() < 1e-5
    # The batch dimension is dynamic: batch 1 (the documented 1 x C x H x W) works too.
    assert (got["one"] - want[:1]).abs().max().item() < 1e-5


def test_export_folder_contents(exported: Path, model_dir: Path):
    assert sorted(p.name for p in exported.iterdir()) == [
        "README.txt", "desc.yaml", "export.json", ARTIFACT]
    assert (exported / "desc.yaml").read_text() == (model_dir / "desc.yaml").read_text()
    info = json.loads((exported / "export.json").read_text())
    assert info["input_shape"] == [1, 2, 7, 7]
    assert info["num_classes"] == 5
    assert "load_dataset" in info["normalization"]
    assert "torch.export.load" in info["load"]
    readme = (exported / "README.txt").read_text()
    assert "1 x 2 x 7 x 7" in readme and "load_dataset" in readme


def test_out_option_reaches_export(model_dir: Path, tmp_path: Path, monkeypatch):
    """--out is passed through (a stub stands in for a second, slow export)."""
    import petrinas.export

    calls = []

    def fake(folder, out):
        calls.append((folder, out))
        return petrinas.export.ExportResult(out, out / ARTIFACT, 0.0)

    monkeypatch.setattr(petrinas.export, "export_folder", fake)
    assert export_main([str(model_dir), "--out", str(tmp_path / "elsewhere")]) == 0
    assert calls == [(model_dir, tmp_path / "elsewhere")]


@pytest.mark.parametrize("missing", ["folder", "desc.yaml", "weights.pt"])
def test_missing_input_exits_2(missing: str, model_dir: Path, tmp_path: Path, capsys):
    target = tmp_path / "model"
    if missing != "folder":
        target.mkdir()
        for name in {"desc.yaml", "weights.pt"} - {missing}:
            (target / name).write_bytes((model_dir / name).read_bytes())
    assert export_main([str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1
    assert missing in err or "no such model folder" in err


def test_weights_that_do_not_fit_exit_2(model_dir: Path, tmp_path: Path, capsys):
    (tmp_path / "desc.yaml").write_bytes((model_dir / "desc.yaml").read_bytes())
    other = build_model(ModelDesc.from_dict({**_desc().to_dict(), "num_classes": 3}))
    save_weights(other.state_dict(), tmp_path / "weights.pt")
    assert export_main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "cannot load" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("cut", [0, 100, 0.5, -100])
def test_truncated_weights_are_one_line_naming_the_file(cut, model_dir: Path, tmp_path: Path,
                                                        capsys):
    """A weights.pt cut short (a copy interrupted, a full disk): load_model raises the
    input error naming the file, and export exits 2 with it on one line. Fails if
    torch's own EOFError / ValueError / KeyError (a traceback) gets through."""
    from petrinas.errors import InputError

    blob = (model_dir / "weights.pt").read_bytes()
    end = int(len(blob) * cut) if isinstance(cut, float) else cut % len(blob)
    (tmp_path / "desc.yaml").write_bytes((model_dir / "desc.yaml").read_bytes())
    (tmp_path / "weights.pt").write_bytes(blob[:end])
    with pytest.raises(InputError, match=rf"^{tmp_path / 'weights.pt'}: cannot load the "
                                         r"weights, the file is truncated or damaged \(\w+"):
        load_model(tmp_path)
    assert export_main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'weights.pt'}: cannot load the weights")
    assert err.count("\n") == 1


def test_export_help_names_the_eval_stages_models():
    """Fails if `export --help` does not say it takes the eval stage's models (a run's
    eval/ folder, an eval trial folder), the fully trained ones."""
    from petrinas.cli import export_parser

    text = " ".join(export_parser().format_help().split())
    assert "or the eval stage's, which are trained fully" in text
    assert "RUN/eval/trials/<id>" in text
    assert "its eval stage's RUN/eval (the best eval model)" in text


def test_script_exits_2_for_missing_folder(tmp_path: Path, monkeypatch, capsys):
    # runpy runs the script file as __main__ without the cost of a new interpreter.
    monkeypatch.setattr(sys, "argv", ["export.py", str(tmp_path / "nope")])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(REPO / "scripts" / "export.py"), run_name="__main__")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
