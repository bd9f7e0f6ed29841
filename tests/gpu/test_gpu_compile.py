"""torch.compile of the training steps, on CUDA, on a small grown model: compiling takes
far longer than training here (benchmarks/gpu_check.sh runs this file last)."""

import math

import pytest
import torch

from petrinas.config_loader import load_config
from petrinas.data import load_splits
from petrinas.model_desc import build_model, build_seed
from petrinas.model_desc.grow import alphas, grow_model
from petrinas.train.trainer import train
from support import SYNTHETIC_SMALL

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_compiled_training_uses_two_graphs_and_stays_finite():
    """One graph for the full batch, one for the last; evaluation stays eager. Fails if
    the compiled step recompiles beyond those two, or if it trains to a non-finite loss."""
    from torch._dynamo.utils import counters

    config = load_config("petridish", [
        *SYNTHETIC_SMALL, "model.init_channels=8", "search.search_train.epochs=2",
        "search.search_train.batch_size=64", "search.search_train.compile=true",
        "model.candidate_ops=[sep_conv_3x3, skip_connect, none]"])
    splits = load_splits(config.dataset, config.seed, keep_uint8=True)
    desc = build_seed(config, cells=2, reductions=0, nodes=1)
    torch.manual_seed(0)
    model = grow_model(desc, build_model(desc).state_dict(), config.model.candidate_ops)
    torch._dynamo.reset()
    counters.clear()
    result = train(model, splits, config.search.search_train, device="cuda", seed=0,
                   l1_params=alphas(model), l1=config.search.l1)
    assert counters["stats"]["unique_graphs"] <= 2
    assert all(math.isfinite(m.train_loss) for m in result.history)
