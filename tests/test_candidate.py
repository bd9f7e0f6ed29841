"""The grouped candidate against its definition, the per-pair form (pairwise.py): the same
outputs, gradients and BN statistics for every primitive, in normal and reduction cells;
finalize takes the same weights out of either; `none` is never computed.

Tolerances. The two forms do the same arithmetic in other orders: a grouped convolution
and G separate ones sum their products in different orders, and the alphas are applied as
one matrix product instead of a running sum. The comparisons therefore run in float64,
where these orders differ by ~1e-16 relative, and allow 1e-9 of each tensor's largest
value: a BN weight's gradient is a sum of large terms that nearly cancel (its values can
be 1e-5 of the terms), which multiplies the rounding differences by up to ~1e5; measured,
the largest difference is 1.3e-11 of the tensor's largest value. In float32 the same
amplification makes 1e-2 of a gradient's largest value necessary (measured 1.4e-2 on
BN weights of 1e-6): too loose to compare gradients with, which is why float64 is used.
"""

import copy

import pytest
import torch

from petrinas.config_loader import load_config
from petrinas.model_desc import ModelDesc, build_model, build_seed
from petrinas.model_desc.candidate import Candidate, candidate_groups
from petrinas.model_desc.desc import CandidateDesc
from petrinas.model_desc.grow import alphas, finalize, grow_model
from petrinas.model_desc.ops import OPS, PRIMITIVES, Zero, make_op, register_op
from petrinas.model_desc.pairwise import PairwiseCandidate, grouped_state, pairwise_state
from support import grown_with_every_primitive, randomize

RTOL = 1e-9
C = 4


@pytest.fixture(scope="module", autouse=True)
def _threads(one_thread):
    pass


def _states(reduction: bool, n_states: int = 4, seed: int = 0) -> list[torch.Tensor]:
    """Cell states: in a reduction cell s0 and s1 have twice the nodes' resolution."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(3, C, 10 if reduction and s < 2 else 5, 10 if reduction and s < 2
                        else 5, generator=generator, dtype=torch.float64)
            for s in range(n_states)]


def _close(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    scale = want.abs().max().clamp_min(1e-300)
    assert got.shape == want.shape, what
    assert (got - want).abs().max() <= RTOL * scale, (what, (got - want).abs().max(), scale)


def _grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: p.grad for key, p in module.named_parameters() if p.grad is not None}


def _sum_before_stop_forward(candidate, states) -> torch.Tensor:
    """What the candidate adds up, computed on a copy (a train-mode forward moves BN
    statistics)."""
    probe = copy.deepcopy(candidate)
    with torch.no_grad():
        if isinstance(probe, PairwiseCandidate):
            return sum(probe.alpha[m] * op(states[s])
                       for m, (s, op) in enumerate(zip(probe.inputs, probe.ops)))
        return sum((group(states, probe.alpha) for group in probe.groups),
                   torch.zeros((), dtype=torch.float64))


def _run(candidate, states, weight) -> torch.Tensor:
    """One train-mode forward and backward of (output * weight); returns the sum."""
    total = _sum_before_stop_forward(candidate, states)
    out = candidate(states)
    assert torch.equal(out, torch.zeros_like(out))  # stop-forward: exactly zero
    (out * weight).sum().backward()
    return total


def _assert_same_in_pairwise_layout(grouped_tensors, reference, desc, reduction, what):
    converted = pairwise_state(grouped_tensors, desc, reduction)
    assert converted.keys() == reference.keys(), what
    for key, want in reference.items():
        if want.dim():
            _close(converted[key], want, f"{what} {key}")
        else:  # BN's num_batches_tracked
            assert torch.equal(converted[key], want), f"{what} {key}"


CASES = [pytest.param(name, reduction, id=f"{name}-{'reduce' if reduction else 'normal'}")
         for name in sorted(PRIMITIVES) for reduction in (False, True)]


@pytest.mark.parametrize("name,reduction", CASES)
def test_grouped_candidate_equals_the_per_pair_form(name, reduction):
    """One op with `none` beside it, over s0, s1 and two nodes: in a reduction cell s0
    and s1 are read at stride 2 (one group) and the nodes at stride 1 (another). Same
    sum, same gradients (alphas and op weights), same BN statistics afterwards."""
    desc = CandidateDesc(inputs=(0, 1, 2, 3), ops=(name, "none"))
    reference = PairwiseCandidate(desc, C, reduction).double().train()
    randomize(reference, seed=1)
    grouped = Candidate(desc, C, reduction).double().train()
    grouped.load_state_dict(grouped_state(reference.state_dict(), desc, reduction))
    assert len(grouped.groups) == (0 if name == "none" else 2 if reduction else 1)
    states = _states(reduction)
    weight = torch.randn(3, C, 5, 5, dtype=torch.float64)

    want = _run(reference, states, weight)
    got = _run(grouped, states, weight)
    _close(got.expand_as(want), want, "sum before stop-forward")
    reference_grads = _grads(reference)
    _assert_same_in_pairwise_layout(_grads(grouped), reference_grads, desc, reduction,
                                    "gradient")
    _assert_same_in_pairwise_layout(grouped.state_dict(), reference.state_dict(), desc,
                                    reduction, "state")
    none_alphas = [m for m, (_, op) in enumerate(desc.pairs) if op == "none"]
    assert not grouped.alpha.grad[none_alphas].any()  # zeros times anything


# ----------------------------------------------------------------------- in a model

@pytest.fixture(scope="module")
def grown_pair():
    return grown_with_every_primitive()


def _x(n=6, seed=3):
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def test_grown_model_matches_the_per_pair_form(grown_pair):
    """Same loss, bit for bit (the candidate adds exact zeros in both forms), the same
    gradients for every weight of the parent, bit for bit, and the candidates'
    gradients within float64 rounding."""
    reference, grouped = (copy.deepcopy(m).train() for m in grown_pair)
    x, y = _x(), torch.arange(6) % 10
    losses = []
    for model in (reference, grouped):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        losses.append(loss)
    assert torch.equal(losses[0], losses[1])
    grouped_params = dict(grouped.named_parameters())
    parent_keys = [k for k, _ in reference.named_parameters() if ".candidate." not in k]
    assert parent_keys
    for key in parent_keys:
        assert torch.equal(grouped_params[key].grad, dict(reference.named_parameters())[key].grad)
    for i, (ref_cell, cell) in enumerate(zip(reference.cells, grouped.cells)):
        reduction = i in reference.desc.reduction_indices
        desc = reference.desc.cell_desc(i).candidate
        _assert_same_in_pairwise_layout(_grads(cell.candidate), _grads(ref_cell.candidate),
                                        desc, reduction, f"cell {i} gradient")
        _assert_same_in_pairwise_layout(cell.candidate.state_dict(),
                                        ref_cell.candidate.state_dict(), desc, reduction,
                                        f"cell {i} state")


def test_finalize_takes_the_per_pair_weights_out_of_the_groups(grown_pair):
    """What finalize does to a grouped candidate is what it did to the per-pair one: the
    chosen pair m of cell i becomes edge j of the new node with the weights of the
    per-pair module cells.{i}.candidate.ops.{m} (copies: no view of a group's tensor)."""
    reference, grouped = grown_pair
    state = grouped.state_dict()
    desc = grouped.desc
    pairs = desc.normal.candidate.pairs
    usable = [m for m, (_, op) in enumerate(pairs) if op != "none"]
    # Every usable pair, so every op is sliced out of every group at least once.
    chosen = {"normal": usable, "reduce": usable}
    new_desc, new_state = finalize(desc, state, len(usable), chosen=chosen)
    reference_state = reference.state_dict()
    node, mapped = desc.nodes, 0
    for i in range(desc.cells):
        for j, m in enumerate(usable):
            prefix = f"cells.{i}.candidate.ops.{m}."
            keys = [k for k in reference_state if k.startswith(prefix)]
            for key in keys:
                new_key = f"cells.{i}.nodes.{node}.edges.{j}.{key[len(prefix):]}"
                assert torch.equal(new_state[new_key], reference_state[key]), new_key
                assert new_state[new_key].untyped_storage().nbytes() == \
                    new_state[new_key].nbytes, new_key  # its own storage, not a slice
                mapped += 1
            node_keys = [k for k in new_state
                         if k.startswith(f"cells.{i}.nodes.{node}.edges.{j}.")]
            assert len(node_keys) == len(keys), (i, m)
    assert mapped > 0
    child = build_model(new_desc).double()
    child.load_state_dict(new_state)  # strict: the finalized layout is the ordinary one
    with torch.no_grad():
        assert torch.equal(child.eval()(_x()), copy.deepcopy(grouped).eval()(_x()))


def test_none_is_never_computed(monkeypatch):
    """`none` only adds zeros: its alpha exists (for the L1 term and the top-k rules)
    but no module of it is built or run."""
    config = load_config("petridish_digits", ["model.init_channels=4"])
    assert "none" in config.model.candidate_ops
    desc = build_seed(config, cells=3, reductions=1, nodes=1)
    grown = grow_model(desc, build_model(desc).state_dict(), config.model.candidate_ops)

    def refuse(self, x):
        raise AssertionError("the none op was computed")
    monkeypatch.setattr(Zero, "forward", refuse)
    assert not any(isinstance(m, Zero) for m in grown.modules())
    grown.train()
    torch.nn.functional.cross_entropy(grown(_x().float()), torch.arange(6) % 10).backward()
    pairs = desc_pairs = grown.desc.normal.candidate.pairs
    none = [m for m, (_, op) in enumerate(desc_pairs) if op == "none"]
    assert len(none) == 3 and len(alphas(grown)) == 3
    for alpha in alphas(grown):
        assert alpha.shape == (len(pairs),)
        assert not alpha.grad[none].any() and alpha.grad.count_nonzero() == len(pairs) - 3


def test_candidate_keeps_the_autocast_dtype():
    """Under bfloat16 autocast the candidate's sum and the cell outputs stay bfloat16:
    the float32 alphas are applied in the ops' dtype, so they promote nothing."""
    config = load_config("petridish_digits", ["model.init_channels=4"])
    desc = build_seed(config, cells=3, reductions=1, nodes=1)
    grown = grow_model(desc, build_model(desc).state_dict(), config.model.candidate_ops)
    outputs = []
    for cell in grown.cells:
        cell.register_forward_hook(lambda _, __, out: outputs.append(("cell", out.dtype)))
        for group in cell.candidate.groups:
            group.register_forward_hook(lambda _, __, out: outputs.append(("sum", out.dtype)))
    grown.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        grown(_x().float()).sum().backward()
    assert len(outputs) == 3 + 4 and set(outputs) == {("cell", torch.bfloat16),
                                                      ("sum", torch.bfloat16)}
    assert all(alpha.grad.dtype == torch.float32 for alpha in alphas(grown))


# ------------------------------------------------------------------- a plugin's op

@pytest.fixture
def plugin_op():
    """An op registered without a grouped form, removed from the registry afterwards."""
    name = "plugin_conv_1x1"

    @register_op(name, "primitive")
    def _plugin(c_in, c_out, stride, affine=True):
        return torch.nn.Sequential(torch.nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                   torch.nn.BatchNorm2d(c_out, affine=affine))
    try:
        yield name
    finally:
        del OPS[name], PRIMITIVES[name]


@pytest.mark.parametrize("reduction", [False, True])
def test_an_op_without_a_grouped_form_runs_per_state(plugin_op, reduction):
    desc = CandidateDesc(inputs=(0, 1, 2), ops=(plugin_op, "sep_conv_3x3", "none"))
    reference = PairwiseCandidate(desc, C, reduction).double().train()
    randomize(reference, seed=2)
    grouped = Candidate(desc, C, reduction).double().train()
    grouped.load_state_dict(grouped_state(reference.state_dict(), desc, reduction))
    assert any(key.startswith(f"groups.0.ops.{plugin_op}.1.") for key in
               grouped.state_dict())
    states = _states(reduction, n_states=3)
    weight = torch.randn(3, C, 5, 5, dtype=torch.float64)
    _close(_run(grouped, states, weight), _run(reference, states, weight), "sum")
    _assert_same_in_pairwise_layout(_grads(grouped), _grads(reference), desc, reduction,
                                    "gradient")
    _assert_same_in_pairwise_layout(grouped.state_dict(), reference.state_dict(), desc,
                                    reduction, "state")
    with pytest.raises(ValueError, match="no grouped form"):
        make_op(plugin_op, 2 * C, 2 * C, 1, groups=2)


def test_groups_follow_the_edge_strides():
    desc = CandidateDesc(inputs=(0, 1, 2, 3), ops=("sep_conv_3x3",))
    assert candidate_groups(desc, reduction=False) == [(1, [0, 1, 2, 3])]
    assert candidate_groups(desc, reduction=True) == [(2, [0, 1]), (1, [2, 3])]
    odd = CandidateDesc(inputs=(2, 0, 3), ops=("sep_conv_3x3",))  # positions, not states
    assert candidate_groups(odd, reduction=True) == [(1, [0, 2]), (2, [1])]
