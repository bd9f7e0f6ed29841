"""A model trained on CUDA exports, and the export computes what the CUDA model did."""

import pytest
import torch

from petrinas.config_loader import load_config
from petrinas.data import load_dataset
from petrinas.export import export_folder
from petrinas.model_desc import ModelDesc
from petrinas.model_desc.model import build_model, save_weights, weights_from_bytes
from petrinas.train.pipeline import JobContext, run_seed
from support import SYNTHETIC_SMALL

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_export_of_a_cuda_trained_model(tmp_path):
    config = load_config("petridish", [*SYNTHETIC_SMALL, "model.init_channels=8",
                                       "search.seed_train.epochs=2"])
    output = run_seed(config, (5, 2, 1), JobContext(seed=0, device="cuda"))
    # Rows name the GPU model, so that compute on different GPUs is never summed blind.
    assert output.row["device"] == f"cuda:{torch.cuda.get_device_name()}"
    desc = ModelDesc.from_dict(output.desc)
    weights = weights_from_bytes(output.weights)
    desc.save(tmp_path / "desc.yaml")
    save_weights(weights, tmp_path / "weights.pt")
    result = export_folder(tmp_path)
    program = torch.export.load(str(result.artifact))

    model = build_model(desc)
    model.load_state_dict(weights)
    model.cuda().eval()
    x = load_dataset(config, split="test").x[:64]
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # compare float32 with float32
    try:
        with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            on_cuda = model(x.cuda()).cpu()
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
    with torch.no_grad():
        exported = program.module()(x)
    assert (exported - on_cuda).abs().max().item() <= 1e-4  # CPU and CUDA kernels
