"""Mixed precision and uint8 data on the device, on CUDA."""

import dataclasses
import math

import pytest
import torch

from petrinas.model_desc.grow import alphas
from petrinas.train.trainer import train
from support import grown_paper_model, paper_search_setting

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def setting():
    return paper_search_setting(epochs=3)


@pytest.mark.parametrize("amp_dtype", ["auto", "float16"])
def test_mixed_precision_training_stays_finite(setting, amp_dtype):
    config, splits = setting
    cfg = dataclasses.replace(config.search.search_train, amp_dtype=amp_dtype)
    model = grown_paper_model(config)
    result = train(model, splits, cfg, device="cuda", seed=0, l1_params=alphas(model),
                   l1=config.search.l1)
    want = ("bfloat16" if amp_dtype == "auto" and torch.cuda.is_bf16_supported(
        including_emulation=False) else "float16")
    assert result.final["precision"] == want
    for epoch in result.history:
        assert math.isfinite(epoch.train_loss) and math.isfinite(epoch.val_loss)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_uint8_batches_normalize_on_cuda_as_on_cpu(setting):
    _, splits = setting
    on_cpu = splits["val"].batch(slice(0, 100))
    on_cuda = splits["val"].to("cuda").batch(slice(0, 100))
    assert torch.allclose(on_cuda.cpu(), on_cpu, rtol=0, atol=1e-6)
