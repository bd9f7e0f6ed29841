"""Growth, the heart of Petridish: a candidate node that changes neither the parent's
function nor its gradients, an L1 term on its alphas, and finalization into a plain node
that again leaves the function unchanged. Finally, growth pays off on digits."""

import copy
import math
import statistics
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from petrinas.config_loader import load_config
from petrinas.data import load_splits
from petrinas.model_desc import ModelDesc, build_model, build_seed
from petrinas.model_desc.grow import (add_candidate, alphas, finalize, grow_model, l1_penalty,
                                      random_pairs, ranked_pairs, select_pairs)
from petrinas.model_desc.model import weights_from_bytes
from petrinas.model_desc.pairwise import pairwise_state
from petrinas.train.pipeline import JobContext, run_search, run_seed
from petrinas.train.trainer import evaluate, train


@pytest.fixture(scope="module", autouse=True)
def _threads(one_thread):
    pass


@pytest.fixture(scope="module")
def config():
    return load_config("petridish_digits", ["model.init_channels=4",
                                            "search.seed_train.epochs=3"])


@pytest.fixture(scope="module")
def splits(config):
    return load_splits(config.dataset, config.seed)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# Macro shapes (cells, reductions, nodes) of the trained parents: one and two reductions,
# and one with an auxiliary head.
PARENTS = {"r1": (3, 1, 2), "r2": (5, 2, 1), "aux": (4, 1, 1)}


@pytest.fixture(scope="module")
def trained_parents(config):
    """Parents trained three epochs on 600 digits (all 1,078 take 1.7x as long): weights
    and BN statistics are non-trivial."""
    splits = load_splits(replace(config.dataset, max_train=600), config.seed)
    out = {}
    for name, (cells, reductions, nodes) in PARENTS.items():
        desc = build_seed(config, cells=cells, reductions=reductions, nodes=nodes)
        desc = replace(desc, aux_head=name == "aux")
        torch.manual_seed(0)
        model = build_model(desc)
        result = train(model, splits, config.search.seed_train, seed=0, eval_test=False)
        assert result.final["val_top1"] > 0.3  # it did learn something
        model.zero_grad(set_to_none=True)      # the trainer leaves the last step's grads
        out[name] = (desc, model)
    return out


def _batch(splits, n=96, split="val"):
    return splits[split].x[:n], splits[split].y[:n]


# ------------------------------------------------------------------------ the candidate

def test_add_candidate_reads_every_state(config):
    desc = build_seed(config, cells=3, reductions=1, nodes=2)
    grown = add_candidate(desc, config.model.candidate_ops)
    for cell in (grown.normal, grown.reduce):
        assert cell.candidate.inputs == (0, 1, 2, 3)
        assert cell.candidate.ops == tuple(config.model.candidate_ops)
        assert len(cell.candidate.pairs) == 4 * len(config.model.candidate_ops)
    assert grown.normal.nodes == desc.normal.nodes
    with pytest.raises(ValueError, match="candidate"):
        add_candidate(grown, config.model.candidate_ops)


def test_a_model_without_reductions_grows_only_its_normal_cell(config):
    """Fails if growth searches, ranks, draws or records pairs for the reduction cell of
    a model that has none (its candidate fed no cell: its pairs tied at 0 and the first
    k by index were "chosen"), or stores anything but the normal cell there."""
    desc = build_seed(config, cells=2, reductions=0, nodes=1)
    torch.manual_seed(0)
    grown = grow_model(desc, build_model(desc).state_dict(), config.model.candidate_ops)
    assert grown.desc.normal.candidate is not None and grown.desc.reduce.candidate is None
    assert not any(name.startswith("cells.") and ".candidate." in name and
                   "reduce" in name for name in grown.state_dict())
    state = _state(grown)
    assert list(ranked_pairs(grown.desc, state)) == ["normal"]
    assert list(select_pairs(grown.desc, state, 2)) == ["normal"]
    assert list(random_pairs(grown.desc, 2, torch.Generator().manual_seed(0))) == ["normal"]
    child, child_state = finalize(grown.desc, state, 2)
    assert child.reduce == child.normal and len(child.normal.nodes[-1].edges) == 2
    build_model(child).load_state_dict(child_state)
    with pytest.raises(ValueError, match="cell kinds"):
        finalize(grown.desc, state, 2, chosen={"normal": [0, 1], "reduce": [0, 1]})


def test_grow_model_refuses_weights_that_do_not_fit_exactly(config, trained_parents):
    desc, parent = trained_parents["r1"]
    _, other = trained_parents["r2"]
    with pytest.raises(ValueError, match="do not fit"):
        grow_model(desc, _state(other), config.model.candidate_ops)
    missing = _state(parent)
    del missing["cells.0.pre1.conv.weight"]   # would stay at its random initialization
    with pytest.raises(ValueError, match=r"missing \['cells.0.pre1.conv.weight'\]"):
        grow_model(desc, missing, config.model.candidate_ops)
    extra = {**_state(parent), "cells.9.proj.conv.weight": torch.zeros(1)}
    with pytest.raises(ValueError, match=r"unexpected \['cells.9.proj.conv.weight'\]"):
        grow_model(desc, extra, config.model.candidate_ops)


@pytest.mark.parametrize("name", list(PARENTS))
def test_growth_preserves_the_function_exactly(config, splits, trained_parents, name):
    desc, parent = trained_parents[name]
    grown = grow_model(desc, _state(parent), config.model.candidate_ops)
    # Every parent weight (and BN statistic) is carried over unchanged.
    grown_state = grown.state_dict()
    for key, value in parent.state_dict().items():
        assert torch.equal(grown_state[key], value), key
    assert any(".candidate." in key for key in grown_state)
    x, _ = _batch(splits, 256)
    parent.eval(), grown.eval()
    with torch.no_grad():
        want, got = parent(x), grown(x)
    assert (want - got).abs().max().item() <= 1e-6
    # Also on the whole test split, through the evaluation code path.
    assert evaluate(parent, splits["test"]) == pytest.approx(evaluate(grown, splits["test"]),
                                                            abs=1e-6)


def _loss(model, x, y) -> torch.Tensor:
    """Cross entropy, plus the auxiliary head's when the model has one."""
    if model.aux_head is None:
        return F.cross_entropy(model(x), y)
    logits, aux = model(x, with_aux=True)
    return F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(aux, y)


@pytest.mark.parametrize("name,drop_path", [("r1", 0.0), ("r2", 0.0), ("r1", 0.3),
                                            ("aux", 0.3)])
def test_parent_gets_exactly_its_own_gradients(config, splits, trained_parents, name,
                                               drop_path):
    """In train mode, with drop-path masks (the same draws for both: the candidate draws
    none) and an auxiliary head, the parent's gradients are exactly its own."""
    desc, trained = trained_parents[name]
    parent = copy.deepcopy(trained).train()  # train-mode BN updates statistics: copies
    grown = grow_model(desc, _state(trained), config.model.candidate_ops).train()
    parent.drop_path_prob = grown.drop_path_prob = drop_path
    x, y = _batch(splits, 64, "train")
    torch.manual_seed(7)
    parent_loss = _loss(parent, x, y)
    parent_loss.backward()
    torch.manual_seed(7)
    grown_loss = _loss(grown, x, y)
    grown_loss.backward()
    # In training mode the candidate runs, and its stop-forwarded value is exactly zero.
    assert torch.equal(grown_loss, parent_loss)

    parent_params = dict(parent.named_parameters())
    compared = 0
    for key, param in grown.named_parameters():
        if key in parent_params:
            want = parent_params[key].grad
            assert want is not None and param.grad is not None, key
            assert torch.equal(param.grad, want), (key, (param.grad - want).abs().max())
            compared += 1
    assert compared == len(parent_params)

    # The candidate learns: every alpha of a non-`none` op, and every op parameter.
    cells = grown.desc.cells
    assert len(alphas(grown)) == cells
    for i, cell in enumerate(grown.cells):
        ops = [op for _, op in grown.desc.cell_desc(i).candidate.pairs]
        grad = cell.candidate.alpha.grad
        assert grad is not None
        for m, op in enumerate(ops):
            if op == "none":
                assert grad[m] == 0  # zeros times anything
            else:
                assert grad[m] != 0, (i, m, op)
    candidate_params = [(k, p) for k, p in grown.named_parameters()
                        if ".candidate.groups." in k]
    assert candidate_params
    dead = [k for k, p in candidate_params if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, dead


def _candidate_ops(model) -> list[tuple[str, torch.nn.Module]]:
    """(cell.group.op, module) of every op module the candidates run."""
    return [(f"{i}.{g}.{name}", op) for i, cell in enumerate(model.cells)
            for g, group in enumerate(cell.candidate.groups)
            for name, op in group.ops.items()]


def _count_candidate_op_calls(model) -> list[str]:
    calls: list[str] = []
    for name, op in _candidate_ops(model):
        op.register_forward_hook(lambda *_, name=name: calls.append(name))
    return calls


def test_candidate_runs_only_where_it_carries_a_gradient(config, splits, trained_parents):
    """Evaluation (eval mode, or no_grad) skips the candidate's ops; the output is the
    parent's, bit for bit. Training mode with gradients runs every one of them."""
    desc, parent = trained_parents["r1"]
    grown = grow_model(desc, _state(parent), config.model.candidate_ops)
    calls = _count_candidate_op_calls(grown)
    x, _ = _batch(splits, 64)
    parent.eval(), grown.eval()
    want = parent(x)
    assert torch.equal(grown(x), want)              # eval mode, gradients on
    with torch.no_grad():
        assert torch.equal(grown(x), want)          # eval mode, no_grad
        grown.train()
        grown(x)                                    # training mode, no_grad
    assert calls == []
    grown(x)                                        # training mode, gradients on
    # One module per op (`none` is never run) and group of states that share a stride:
    # two groups in a reduction cell (s0, s1 at stride 2; the nodes), one elsewhere.
    groups = desc.cells + len(desc.reduction_indices)
    computed = len(config.model.candidate_ops) - 1
    assert sorted(calls) == sorted(name for name, _ in _candidate_ops(grown))
    assert len(calls) == groups * computed


def test_trainer_moves_parent_weights_as_without_candidate(config, splits, trained_parents):
    """Through the trainer, the parent's parameters are updated exactly as they are
    without the candidate. (Gradient clipping is off: its global norm includes the
    candidate's gradients, which would rescale the parent's step.)"""
    desc, trained = trained_parents["r1"]
    train_cfg = load_config("petridish_digits", ["search.seed_train.epochs=1",
                                                 "search.seed_train.grad_clip=0",
                                                 "dataset.max_train=128"]).search.seed_train
    small = load_splits(load_config("petridish_digits", ["dataset.max_train=128"]).dataset, 0)
    parent = copy.deepcopy(trained)
    grown = grow_model(desc, _state(trained), config.model.candidate_ops)
    train(parent, small, train_cfg, seed=3, eval_test=False)
    train(grown, small, train_cfg, seed=3, eval_test=False,
          l1_params=alphas(grown), l1=0.01)
    grown_state = grown.state_dict()
    for key, value in parent.state_dict().items():
        assert torch.equal(grown_state[key], value), key


# ----------------------------------------------------------------------------------- L1

def test_l1_penalty_is_sum_abs_alpha_with_sign_gradient(config):
    desc = build_seed(config, cells=3, reductions=1, nodes=1)
    torch.manual_seed(0)
    grown = build_model(add_candidate(desc, config.model.candidate_ops))
    params = alphas(grown)
    assert len(params) == 3
    # One alpha per (input, op): inputs s0, s1 and the one node.
    assert all(p.shape == (3 * len(config.model.candidate_ops),) for p in params)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn(p.shape, generator=generator))
    penalty = l1_penalty(grown)
    want = sum(p.detach().abs().sum() for p in params)
    assert torch.allclose(penalty, want, rtol=0, atol=1e-6)
    penalty.backward()
    for p in params:
        assert torch.equal(p.grad, torch.sign(p.detach()))
    assert all(p.grad is None for k, p in grown.named_parameters() if "alpha" not in k)


# ------------------------------------------------------------------------------ finalize

@pytest.fixture(scope="module")
def searched(config, splits, trained_parents):
    """The two-reduction parent grown and trained a few steps with the L1 term."""
    desc, parent = trained_parents["r2"]
    grown = grow_model(desc, _state(parent), config.model.candidate_ops)
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(grown.parameters(), lr=0.05, momentum=0.9)
    grown.train()
    for step in range(6):
        x = splits["train"].x[step * 64:(step + 1) * 64]
        y = splits["train"].y[step * 64:(step + 1) * 64]
        loss = F.cross_entropy(grown(x), y) + 0.01 * l1_penalty(grown)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    grown.eval()
    return grown


def test_search_training_moves_the_alphas(searched):
    for alpha in alphas(searched):
        values = alpha.detach()
        assert len(set(values.tolist())) > len(values) // 2  # they differ now


@pytest.mark.parametrize("k", [1, 3])
def test_finalize_preserves_the_function(config, splits, searched, k):
    state = _state(searched)
    desc, new_state = finalize(searched.desc, state, k)
    child = build_model(desc)
    child.load_state_dict(new_state)  # strict: every key fits, none is missing
    child.eval()
    assert desc.normal.candidate is None and desc.reduce.candidate is None
    assert desc.nodes == searched.desc.nodes + 1
    assert all(len(cell.nodes[-1].edges) == k for cell in (desc.normal, desc.reduce))
    x, _ = _batch(splits, 256)
    with torch.no_grad():
        want, got = searched(x), child(x)
    assert (want - got).abs().max().item() <= 1e-6
    # finalize works on a copy: the grown state is untouched.
    assert all(torch.equal(state[key], value) for key, value in searched.state_dict().items())


@pytest.mark.parametrize("affine", [False, True])
def test_search_candidate_affine_reaches_the_candidate_of_the_search_phase(affine):
    """From the config key through pipeline.search_phase (one epoch on 64 digits: only
    the wiring is under test): the grown description says it, and the model it describes
    has BatchNorms with or without a scale and shift in the candidate, as the trained
    state.

    Fails if search.candidate_affine does not reach the candidate the search builds."""
    from torch import nn

    from petrinas.model_desc.model import weights_to_bytes
    from petrinas.train.pipeline import search_phase

    config = load_config("petridish_digits", [
        "model.init_channels=4", "search.search_train.epochs=1", "dataset.max_train=64",
        f"search.candidate_affine={str(affine).lower()}"])
    parent = build_seed(config, cells=1, reductions=0, nodes=1)
    torch.manual_seed(0)
    weights = weights_to_bytes(build_model(parent).state_dict())
    few = load_splits(config.dataset, config.seed)
    searched = search_phase(config, parent, weights, few, JobContext(seed=0))
    grown = build_model(searched.desc)
    grown.load_state_dict(searched.state)  # strict: the state has the same parameters
    norms = [m for n, m in grown.named_modules()
             if ".candidate." in n and isinstance(m, nn.BatchNorm2d)]
    assert searched.desc.normal.candidate.affine is affine
    assert norms and {m.affine for m in norms} == {affine}


@pytest.mark.parametrize("init", ["inherit", "fresh"])
def test_a_candidate_without_batchnorm_scale_finalizes_into_identical_ordinary_ops(
        config, splits, trained_parents, init):
    """candidate_affine false: the candidate's BatchNorms learn no scale or shift; the
    finalized node's ordinary ops (which do) start at scale 1 and shift 0 with the
    candidate's statistics, so each computes exactly what it computed in the candidate."""
    from torch import nn

    from petrinas.model_desc.candidate import pair_state
    from petrinas.model_desc.ops import make_op

    desc, parent = trained_parents["r1"]
    grown = grow_model(desc, _state(parent), config.model.candidate_ops, affine=False)
    norms = [m for n, m in grown.named_modules()
             if ".candidate." in n and isinstance(m, nn.BatchNorm2d)]
    assert norms and not any(m.affine for m in norms)
    grown.train()
    with torch.no_grad():  # moves the candidate's statistics away from their start
        grown(splits["train"].x[:64])
    grown.eval()
    state = _state(grown)
    child_desc, child_state = finalize(grown.desc, state, 3, init=init)
    child = build_model(child_desc)
    child.load_state_dict(child_state)  # strict: no key missing
    cell = grown.desc.normal
    node = len(cell.nodes)
    assert 0 not in grown.desc.reduction_indices
    for j, edge in enumerate(child_desc.normal.nodes[-1].edges):
        op = child.cells[0].nodes[node].edges[j]
        bns = [m for m in op.modules() if isinstance(m, nn.BatchNorm2d)]
        channels = child.cells[0].proj.conv.weight.shape[0]
        x = torch.randn(8, channels, 8, 8)
        if init == "inherit":
            assert all(torch.equal(m.weight, torch.ones_like(m.weight)) and
                       torch.equal(m.bias, torch.zeros_like(m.bias)) for m in bns)
            m = cell.candidate.pairs.index((edge.input, edge.op.name))
            reference = make_op(edge.op.name, channels, channels, 1, affine=False)
            reference.load_state_dict(pair_state(state, "cells.0.candidate.", cell.candidate,
                                                 False, m))
            reference.eval(), op.eval()
            with torch.no_grad():
                assert torch.equal(op(x), reference(x))


@pytest.mark.parametrize("name", ["r2", "aux"])
def test_finalize_preserves_the_function_in_train_mode(config, splits, trained_parents,
                                                       name):
    """Batch statistics instead of running ones, and an auxiliary head: the new node's
    contribution is still exactly zero. (With drop-path the outputs would differ, but by
    the masks only: the new node draws its own, which shifts the random stream.)"""
    desc, parent = trained_parents[name]
    grown = grow_model(desc, _state(parent), config.model.candidate_ops)
    new_desc, new_state = finalize(grown.desc, _state(grown), 3)
    child = build_model(new_desc)
    child.load_state_dict(new_state)
    before, child = copy.deepcopy(grown).train(), child.train()
    x, _ = _batch(splits, 64, "train")
    want, got = before(x, with_aux=True), child(x, with_aux=True)
    assert (want[0] - got[0]).abs().max().item() <= 1e-5
    if name == "aux":
        assert (want[1] - got[1]).abs().max().item() <= 1e-5
    else:
        assert want[1] is None and got[1] is None


def test_fresh_init_preserves_the_function_with_untrained_node_weights(splits, searched):
    state = _state(searched)
    inherited_desc, inherited = finalize(searched.desc, state, 3)
    torch.manual_seed(11)
    desc, fresh = finalize(searched.desc, state, 3, init="fresh")
    assert desc == inherited_desc
    node = desc.nodes - 1
    new_keys = [k for k in fresh if f".nodes.{node}.edges." in k]
    kernels = [k for k in new_keys if fresh[k].dim() == 4]   # conv weights: freshly drawn
    assert kernels and all(not torch.equal(fresh[k], inherited[k]) for k in kernels)
    assert all(torch.equal(fresh[k], inherited[k]) for k in fresh if k not in new_keys)
    child = build_model(desc)
    child.load_state_dict(fresh)
    child.eval()
    x, _ = _batch(splits, 256)
    with torch.no_grad():
        assert (searched(x) - child(x)).abs().max().item() <= 1e-6
    with pytest.raises(ValueError, match="init must be one of"):
        finalize(searched.desc, state, 3, init="zero")


def test_random_pairs_are_k_distinct_non_none_and_seeded(searched):
    desc = searched.desc
    draws = [random_pairs(desc, 3, torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    assert draws[0] == draws[1] != draws[2]
    for kind, chosen in draws[0].items():
        pairs = getattr(desc, kind).candidate.pairs
        assert len(set(chosen)) == 3 and chosen == sorted(chosen)
        assert all(pairs[m][1] != "none" for m in chosen)
    # Every usable pair comes up over many draws; `none` never does.
    seen = set()
    for s in range(200):
        seen.update(random_pairs(desc, 3, torch.Generator().manual_seed(s))["normal"])
    usable = {m for m, (_, op) in enumerate(desc.normal.candidate.pairs) if op != "none"}
    assert seen == usable


def test_finalized_node_still_learns(config, splits, searched):
    desc, new_state = finalize(searched.desc, _state(searched), 3)
    child = build_model(desc)
    child.load_state_dict(new_state)
    child.train()
    x, y = _batch(splits, 64, "train")
    F.cross_entropy(child(x), y).backward()
    channels = desc.cell_channels()
    for i, cell in enumerate(child.cells):
        c = channels[i]
        new_columns = cell.proj.conv.weight.grad[:, -c:]
        assert new_columns.abs().sum() > 0, i  # the zero columns get a gradient
        node = cell.nodes[-1]
        assert all(p.grad is not None for p in node.parameters())


CAND_OPS = ("sep_conv_3x3", "max_pool_3x3", "skip_connect", "none")


@pytest.fixture(scope="module")
def hand_set(config, trained_parents):
    """A grown two-reduction model (normal cells 0, 2, 4; reduction cells 1, 3) whose
    alphas are set by hand. Pairs m = input * 4 + op index, inputs 0..2."""
    desc, parent = trained_parents["r2"]
    assert desc.reduction_indices == [1, 3] and desc.nodes == 1
    grown = grow_model(desc, _state(parent), CAND_OPS)
    # A few steps so the candidate ops' weights (BN included) are trained, not initial.
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(grown.parameters(), lr=0.05)
    grown.train()
    x = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        optimizer.zero_grad()
        F.cross_entropy(grown(x), torch.arange(32) % 10).backward()
        optimizer.step()
    grown.eval()
    state = _state(grown)
    none_pairs = [m for m, (_, op) in enumerate(grown.desc.normal.candidate.pairs) if op == "none"]
    assert none_pairs == [3, 7, 11]
    # |alpha| summed over the normal cells: m=1 -> 1.2, m=8 -> 1.0, m=5 -> 0.6,
    # m=6 -> 0.5; every `none` pair is far above them all.
    normal = {0: {8: 1.0, 6: 0.1}, 2: {1: -0.6, 5: 0.6}, 4: {1: 0.6, 6: 0.4}}
    # Reduction cells: m=2 -> 0.9, m=4 -> 0.8 (negative), m=10 -> 0.75, m=0 -> 0.7
    # (plus 0.01 per cell for the pairs a cell leaves at the default).
    reduce = {1: {2: 0.9, 4: -0.8, 0: 0.35}, 3: {10: 0.75, 0: 0.35}}
    for i, values in {**normal, **reduce}.items():
        alpha = torch.full((12,), 0.01)
        for m, v in values.items():
            alpha[m] = v
        for m in none_pairs:
            alpha[m] = -5.0 - m  # the largest |alpha| of all
        state[f"cells.{i}.candidate.alpha"] = alpha
    return grown.desc, state


def test_select_pairs_sums_over_cells_and_never_takes_none(hand_set):
    desc, state = hand_set
    chosen = select_pairs(desc, state, 3)
    assert chosen == {"normal": [1, 5, 8], "reduce": [2, 4, 10]}
    # Cell 4 alone would pick m=6 (0.4) over m=5 (0.01): the kind's sum decides.
    assert select_pairs(desc, state, 1) == {"normal": [1], "reduce": [2]}
    assert select_pairs(desc, state, 4) == {"normal": [1, 5, 6, 8], "reduce": [0, 2, 4, 10]}
    # Asking for more pairs than there are never brings in `none`.
    many = select_pairs(desc, state, 50)
    for kind in ("normal", "reduce"):
        assert len(many[kind]) == 9
        assert all(desc.normal.candidate.pairs[m][1] != "none" for m in many[kind])


def test_finalize_keeps_top_k_with_trained_weights(hand_set):
    desc, state = hand_set
    new_desc, new_state = finalize(desc, state, 3)
    pairs = desc.normal.candidate.pairs
    expected = {"normal": [1, 5, 8], "reduce": [2, 4, 10]}
    for kind in ("normal", "reduce"):
        node = getattr(new_desc, kind).nodes[-1]
        assert [(e.input, e.op.name) for e in node.edges] == [pairs[m] for m in expected[kind]]
        assert all(e.op.name != "none" for e in node.edges)
        assert getattr(new_desc, kind).nodes[:-1] == getattr(desc, kind).nodes
    assert [(e.input, e.op.name) for e in new_desc.normal.nodes[-1].edges] == [
        (0, "max_pool_3x3"), (1, "max_pool_3x3"), (2, "sep_conv_3x3")]
    assert [(e.input, e.op.name) for e in new_desc.reduce.nodes[-1].edges] == [
        (0, "skip_connect"), (1, "sep_conv_3x3"), (2, "skip_connect")]

    node_index = desc.nodes  # the new node's index in every cell
    mapped = 0
    for i in range(desc.cells):
        kind = "reduce" if i in desc.reduction_indices else "normal"
        # The candidate's weights in the per-pair layout (ops.{m}.*), the reference.
        cell_prefix = f"cells.{i}.candidate."
        pairwise = pairwise_state({k[len(cell_prefix):]: v for k, v in state.items()
                                   if k.startswith(cell_prefix)},
                                  desc.cell_desc(i).candidate, kind == "reduce")
        for j, m in enumerate(expected[kind]):
            prefix = f"ops.{m}."
            keys = [k for k in pairwise if k.startswith(prefix)]
            if not keys:  # only skip_connect at stride 1 (reading a node) has no weights
                assert pairs[m] == (2, "skip_connect"), (prefix, pairs[m])
            for key in keys:
                new_key = f"cells.{i}.nodes.{node_index}.edges.{j}." + key[len(prefix):]
                assert torch.equal(new_state[new_key], pairwise[key]), new_key
                mapped += 1
        # The projection: old columns kept, new columns zero.
        old = state[f"cells.{i}.proj.conv.weight"]
        new = new_state[f"cells.{i}.proj.conv.weight"]
        c = old.shape[0]
        assert new.shape == (c, old.shape[1] + c, 1, 1)
        assert torch.equal(new[:, :old.shape[1]], old)
        assert torch.count_nonzero(new[:, old.shape[1]:]) == 0
    assert mapped > 0
    # Nothing of the candidate survives; every other key is carried over unchanged.
    assert not any(".candidate." in key for key in new_state)
    for key, value in state.items():
        if ".candidate." not in key and not key.endswith("proj.conv.weight"):
            assert torch.equal(new_state[key], value), key
    child = build_model(new_desc)
    child.load_state_dict(new_state)
    assert child.state_dict().keys() == new_state.keys()


def test_finalized_desc_round_trips(hand_set, tmp_path):
    desc, state = hand_set
    new_desc, _ = finalize(desc, state, 3)
    new_desc.save(tmp_path / "desc.yaml")
    assert ModelDesc.load(tmp_path / "desc.yaml") == new_desc
    assert new_desc.arch_hash() != desc.arch_hash()


# ---------------------------------------------------------------------- growth pays off

GROWTH_SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def growth_runs():
    """For each seed: a deliberately small parent (1 cell, 1 node, 8 channels) trained 4
    epochs; its child grown with every digits candidate op, search-trained 2 epochs with
    the L1 term, finalized and post-trained 4 epochs (run_seed / run_search, as a search
    job does); and, for the fair comparison, the parent trained plainly for the same
    2 + 4 extra epochs with the same schedules."""
    runs = []
    for seed in GROWTH_SEEDS:
        config = load_config("petridish_digits", [
            f"seed={seed}", "model.init_channels=8", "model.stem_multiplier=1",
            "search.seed_train.epochs=4", "search.search_train.epochs=2",
            "search.post_train.epochs=4"])
        assert "none" in config.model.candidate_ops  # never chosen, yet it is a candidate
        ctx = JobContext(seed=seed)
        parent = run_seed(config, (1, 0, 1), ctx)
        child = run_search(config, parent.desc, parent.weights, ctx)

        plain = build_model(ModelDesc.from_dict(parent.desc))
        plain.load_state_dict(weights_from_bytes(parent.weights))
        splits = load_splits(config.dataset, config.seed)
        train(plain, splits, config.search.search_train, seed=seed)
        extra = train(plain, splits, config.search.post_train, seed=seed)
        runs.append({"seed": seed, "parent": parent, "child": child,
                     "parent_extra_val": extra.final["val_top1"]})
    return runs


def test_child_is_a_grown_parent(growth_runs):
    for run in growth_runs:
        parent, child = ModelDesc.from_dict(run["parent"].desc), ModelDesc.from_dict(
            run["child"].desc)
        assert child.nodes == parent.nodes + 1
        assert child.normal.nodes[:-1] == parent.normal.nodes
        assert 1 <= len(child.normal.nodes[-1].edges) <= 3
        assert run["child"].row["macs"] > run["parent"].row["macs"]
        assert run["child"].row["epochs"] == 6
        for kind, chosen in run["child"].notes["chosen"].items():
            assert all(op != "none" for _, op in chosen)
        # A 1-cell parent has no reduction cell: nothing is chosen or stored for it.
        assert list(run["child"].notes["chosen"]) == ["normal"]
        assert child.reduce == child.normal


def test_growth_beats_the_parent(growth_runs):
    lines = []
    for run in growth_runs:
        parent_val = run["parent"].row["val_top1"]
        child_val = run["child"].row["val_top1"]
        lines.append(f"seed {run['seed']}: parent {parent_val:.3f} -> plain +6 epochs "
                     f"{run['parent_extra_val']:.3f}, grown child {child_val:.3f}")
        # The child always beats the parent it grew from.
        assert child_val > parent_val + 0.05, lines[-1]
    # The fair comparison: the parent trained plainly for the same extra epochs. The
    # margin per seed is a few points, so it is taken over the seeds' mean.
    child_mean = statistics.mean(r["child"].row["val_top1"] for r in growth_runs)
    plain_mean = statistics.mean(r["parent_extra_val"] for r in growth_runs)
    assert child_mean > plain_mean, "\n".join(lines)


@pytest.mark.parametrize("schedule, post_lrs", [
    # Each phase restarts its cosine at the peak (0.05): post epochs start at 0.05, 0.025.
    ("per_phase", [0.05, 0.025]),
    # One cosine over 2 + 2 epochs: the post phase starts where the search phase stopped,
    # at 0.05 * (1 + cos(pi * 2/4)) / 2 = 0.025, then 0.05 * (1 + cos(pi * 3/4)) / 2.
    ("continuous", [0.025, 0.05 * (1 + math.cos(math.pi * 3 / 4)) / 2])])
def test_the_child_trains_on_the_learning_rate_its_schedule_says(schedule, post_lrs):
    """Read from the child's own per-epoch history, as the search job recorded it."""
    config = load_config("petridish_digits", [
        "model.init_channels=4", "dataset.max_train=96", "search.seed_train.epochs=1",
        "search.search_train.epochs=2", "search.post_train.epochs=2",
        f"search.child_schedule={schedule}"])
    assert config.search.search_train.lr == config.search.post_train.lr == 0.05
    ctx = JobContext(seed=0)
    parent = run_seed(config, (1, 0, 1), ctx)
    child = run_search(config, parent.desc, parent.weights, ctx)
    lrs = {phase: [e["lr"] for e in h["history"]] for phase, h in child.history.items()}
    assert lrs["search_train"] == pytest.approx(
        [0.05, 0.05 * (1 + math.cos(math.pi * (1 / 2 if schedule == "per_phase" else 1 / 4)))
         / 2])
    assert lrs["post_train"] == pytest.approx(post_lrs)
