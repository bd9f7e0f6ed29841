"""search.pair_score=alpha_rms: each pair's output size, measured on the grouped candidate,
is the size of that pair's op on its own state (the per-pair definition, pairwise.py); it
weighs |alpha| in select_pairs, and the pipeline measures it only when asked."""

import copy

import pytest
import torch

from petrinas.config_loader import load_config
from petrinas.data import load_splits
from petrinas.model_desc import build_model, build_seed
from petrinas.model_desc.grow import select_pairs
from petrinas.model_desc.model import weights_to_bytes
from petrinas.model_desc.pair_scale import pair_output_rms
from petrinas.train.pipeline import JobContext, Searched, finalize_child, search_phase
from support import grown_with_every_primitive


@pytest.fixture(scope="module", autouse=True)
def _threads(one_thread):
    pass


def test_each_pairs_rms_is_its_op_on_its_state_alone():
    reference, grouped = grown_with_every_primitive()
    grouped.eval()
    grouped.drop_path_prob = 0.3
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(3),
                    dtype=torch.float64)
    states = {}
    for i, cell in enumerate(grouped.cells):
        cell.candidate.register_forward_pre_hook(
            lambda module, args, i=i: states.__setitem__(i, [s.detach() for s in args[0]]))
    rms = pair_output_rms(grouped, x)
    assert not grouped.training and grouped.drop_path_prob == 0.3  # both restored
    assert sorted(rms) == sorted(states) == [0, 1, 2]
    for i, cell in enumerate(reference.cells):
        candidate = copy.deepcopy(cell.candidate).train()
        pairs = grouped.desc.cell_desc(i).candidate.pairs
        assert len(rms[i]) == len(pairs)
        for m, ((state, op_name), op) in enumerate(zip(pairs, candidate.ops)):
            want = op(states[i][state]).detach().double().pow(2).mean().sqrt()
            if op_name == "none":
                assert rms[i][m] == 0
            else:
                assert float(rms[i][m]) == pytest.approx(float(want), rel=1e-9), (i, m, op_name)
                assert rms[i][m] > 0


def test_a_model_without_candidate_has_no_pairs():
    config = load_config("petridish_digits", ["model.init_channels=4"])
    model = build_model(build_seed(config, cells=3, reductions=1, nodes=1))
    assert pair_output_rms(model, torch.zeros(2, 1, 8, 8)) == {}


def test_select_pairs_weighs_each_cells_alpha_by_its_scale():
    _, grouped = grown_with_every_primitive()
    desc = grouped.desc
    state = {k: v.clone() for k, v in grouped.state_dict().items()}
    pairs = desc.normal.candidate.pairs
    usable = [m for m, (_, op) in enumerate(pairs) if op != "none"]
    a, b = usable[0], usable[1]
    ones = {i: torch.ones(len(pairs), dtype=torch.float64) for i in range(desc.cells)}
    for i in range(desc.cells):
        alpha = torch.full((len(pairs),), 0.01)
        alpha[a], alpha[b] = 0.5, -0.3  # |alpha| prefers a
        state[f"cells.{i}.candidate.alpha"] = alpha
    assert select_pairs(desc, state, 1)["normal"] == [a]
    assert select_pairs(desc, state, 1, scale=ones)["normal"] == [a]
    # b's output twice the size of a's in cell 0, equal in cell 2 (the normal cells):
    # 0.6 + 0.3 against 0.5 + 0.5.
    scaled = copy.deepcopy(ones)
    scaled[0][b] = 2.0
    assert select_pairs(desc, state, 1, scale=scaled)["normal"] == [a]
    scaled[2][b] = 2.0  # 0.6 + 0.6 > 1.0
    assert select_pairs(desc, state, 1, scale=scaled)["normal"] == [b]


@pytest.fixture(scope="module")
def parent():
    config = load_config("petridish_digits", ["model.init_channels=4"])
    desc = build_seed(config, cells=3, reductions=1, nodes=1)
    torch.manual_seed(0)
    return desc, weights_to_bytes(build_model(desc).state_dict())


@pytest.mark.parametrize("score", ["alpha", "alpha_rms"])
def test_the_search_phase_measures_the_scale_only_when_asked(parent, score):
    config = load_config("petridish_digits", [
        "model.init_channels=4", "search.search_train.epochs=1",
        "dataset.max_train=128", f"search.pair_score={score}"])
    splits = load_splits(config.dataset, config.seed, keep_uint8=True)
    searched = search_phase(config, *parent, splits, JobContext(seed=0))
    if score == "alpha":
        assert searched.scale is None
        return
    pairs = searched.desc.normal.candidate.pairs
    assert sorted(searched.scale) == [0, 1, 2]
    for values in searched.scale.values():
        assert all((v > 0) == (op != "none") for v, (_, op) in zip(values.tolist(), pairs))
    # The finalized child follows the scale: make the pair of least |alpha| the largest.
    least = {}
    for kind, cells in (("normal", [0, 2]), ("reduce", [1])):
        score_ = sum(searched.state[f"cells.{i}.candidate.alpha"].abs() for i in cells)
        usable = [m for m, (_, op) in enumerate(pairs) if op != "none"]
        least[kind] = min(usable, key=lambda m: float(score_[m]))
        for i in cells:
            searched.scale[i][least[kind]] = 1e9
    _, _, notes = finalize_child(config, searched, "alpha", seed=0)
    for kind in ("normal", "reduce"):
        assert list(pairs[least[kind]]) in notes["chosen"][kind]
    plain = Searched(searched.desc, searched.state, searched.result)
    _, _, plain_notes = finalize_child(config, plain, "alpha", seed=0)
    assert plain_notes["chosen"] != notes["chosen"]
