"""Growth on CUDA in float32: the grown model computes exactly its parent's function,
and the parent's weights get exactly their own gradients."""

import copy

import pytest
import torch
import torch.nn.functional as F

from petrinas.config_loader import load_config
from petrinas.data import load_splits
from petrinas.model_desc import build_model, build_seed
from petrinas.model_desc.grow import finalize, grow_model
from support import SYNTHETIC_SMALL

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture
def exact_cuda():
    """float32 as float32 (no TF32) and one fixed algorithm per convolution."""
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True,
                                    allow_tf32=False):
        yield
    torch.backends.cuda.matmul.allow_tf32 = matmul_tf32


@pytest.fixture(scope="module")
def parent_and_data():
    config = load_config("petridish", [*SYNTHETIC_SMALL, "model.init_channels=8"])
    desc = build_seed(config, cells=5, reductions=2, nodes=2)
    torch.manual_seed(0)
    parent = build_model(desc).cuda()
    splits = load_splits(config.dataset, config.seed)
    x = splits["train"].x[:64].cuda()
    y = splits["train"].y[:64].cuda()
    optimizer = torch.optim.SGD(parent.parameters(), lr=0.05, momentum=0.9)
    parent.train()
    for _ in range(3):  # non-trivial weights and BatchNorm statistics
        optimizer.zero_grad()
        F.cross_entropy(parent(x), y).backward()
        optimizer.step()
    parent.zero_grad(set_to_none=True)
    return config, desc, parent, x, y


def test_growth_is_exact_on_cuda(parent_and_data, exact_cuda):
    config, desc, trained, x, y = parent_and_data
    parent = copy.deepcopy(trained)
    state = {k: v.detach().cpu() for k, v in trained.state_dict().items()}
    grown = grow_model(desc, state, config.model.candidate_ops).cuda()
    parent.eval(), grown.eval()
    with torch.no_grad():
        assert torch.equal(grown(x), parent(x))
    parent.train(), grown.train()
    want = parent(x)
    got = grown(x)                      # the candidate runs here
    assert torch.equal(got, want)
    F.cross_entropy(want, y).backward()
    F.cross_entropy(got, y).backward()
    grown_params = dict(grown.named_parameters())
    for key, param in parent.named_parameters():
        assert torch.equal(grown_params[key].grad, param.grad), key
    assert all(cell.candidate.alpha.grad.abs().sum() > 0 for cell in grown.cells)


def test_finalize_keeps_the_function_on_cuda(parent_and_data, exact_cuda):
    config, desc, trained, x, _ = parent_and_data
    state = {k: v.detach().cpu() for k, v in trained.state_dict().items()}
    grown = grow_model(desc, state, config.model.candidate_ops)
    child_desc, child_state = finalize(grown.desc, grown.state_dict(), config.model.top_k)
    child = build_model(child_desc)
    child.load_state_dict(child_state)
    trained.eval(), child.cuda().eval()
    with torch.no_grad():
        # Zero columns of the projection add exact zeros, but a wider convolution may
        # sum in another order: equal to float32 rounding.
        assert (child(x) - trained(x)).abs().max().item() <= 1e-5
