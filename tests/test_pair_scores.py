"""search.pair_score: the scores finalize ranks a candidate's pairs by (pair_scores.py),
read from one training-mode forward and backward of a batch (pair_signals.py)."""

import copy

import pytest
import torch
import torch.nn.functional as F

from petrinas.config_loader import load_config
from petrinas.data import load_splits
from petrinas.errors import ConfigError
from petrinas.model_desc import build_model, build_seed
from petrinas.model_desc.grow import finalize, select_pairs
from petrinas.model_desc.model import weights_to_bytes
from petrinas.model_desc.pair_scores import PAIR_SCORES, Evidence, get_score
from petrinas.model_desc.pair_signals import CellSignals, cell_signals
from petrinas.train.pipeline import JobContext, Searched, finalize_child, search_phase
from support import grown_with_every_primitive


@pytest.fixture(scope="module", autouse=True)
def _threads(one_thread):
    pass


@pytest.fixture(scope="module")
def grown():
    """The grouped model grown with every primitive (float64, random weights), and a
    batch of random images and labels."""
    _, grouped = grown_with_every_primitive()
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(6, 1, 8, 8, generator=generator, dtype=torch.float64)
    y = torch.randint(0, 10, (6,), generator=generator)
    return grouped, (x, y)


def _usable(desc, kind):
    return [m for m, (_, op) in enumerate(getattr(desc, kind).candidate.pairs)
            if op != "none"]


def test_each_pairs_signal_is_its_op_on_its_state_alone(grown):
    """Fails if a pair's recorded output is not its own op on its own state (a block of
    another state or op of the grouped candidate, or computed in eval mode)."""
    reference, _ = grown_with_every_primitive()
    model, (x, y) = grown
    model = copy.deepcopy(model)
    model.eval()
    model.drop_path_prob = 0.3
    states = {}
    for i, cell in enumerate(model.cells):
        cell.candidate.register_forward_pre_hook(
            lambda module, args, i=i: states.__setitem__(i, [s.detach() for s in args[0]]))
    signals = cell_signals(model, x, y)
    assert not model.training and model.drop_path_prob == 0.3  # both restored
    assert sorted(signals) == sorted(states) == [0, 1, 2]
    for i, cell in enumerate(reference.cells):
        candidate = copy.deepcopy(cell.candidate).train()
        pairs = model.desc.cell_desc(i).candidate.pairs
        assert signals[i].n_pairs == len(pairs)
        assert sorted(signals[i].pairs) == [m for m, (_, op) in enumerate(pairs)
                                            if op != "none"]
        for m, h in signals[i].pairs.items():
            want = candidate.ops[m](states[i][pairs[m][0]]).detach()
            assert torch.allclose(h, want.permute(0, 2, 3, 1).reshape(-1, want.shape[1]),
                                  rtol=1e-9, atol=1e-12), (i, m)


def test_the_gradient_score_is_the_new_columns_gradient_of_the_finalized_child(grown):
    """The definition, checked against the real thing: finalize one pair per kind, take
    one training-mode step's gradient of the child's new projection columns; its squared
    norm per cell is that pair's score. Fails if the score reads another tensor than
    what the child's new columns see (pre-ReLU output, the post-BN gradient, ...)."""
    model, (x, y) = grown
    desc = model.desc
    scores = get_score("gradient").fn(Evidence(copy.deepcopy(model), (x, y)))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for normal, reduce in [(_usable(desc, "normal")[0], _usable(desc, "reduce")[4]),
                           (_usable(desc, "normal")[7], _usable(desc, "reduce")[-1])]:
        chosen = {"normal": [normal], "reduce": [reduce]}
        child_desc, child_state = finalize(desc, state, 1, chosen=chosen)
        child = build_model(child_desc).double()
        child.load_state_dict(child_state)
        child.train()
        F.cross_entropy(child(x), y).backward()
        for i, cell in enumerate(child.cells):
            m = reduce if i in desc.reduction_indices else normal
            channels = cell.proj.conv.weight.shape[0]
            new_columns = cell.proj.conv.weight.grad[:, -channels:]
            assert float(scores[i][m]) == pytest.approx(
                float(new_columns.pow(2).sum()), rel=1e-9, abs=1e-18), (i, m)
            assert float(scores[i][m]) > 0


def _signals(pairs: dict, nodes, grad) -> CellSignals:
    column = lambda values: torch.tensor(values, dtype=torch.float64).reshape(-1, 1)  # noqa
    return CellSignals(pairs={m: column(v) for m, v in pairs.items()},
                       nodes=column(nodes), grad=column(grad), n_pairs=4)


def test_residual_and_gradient_scores_by_hand():
    """Four positions, one channel. The cell's node reads position 0; the gradient is 1
    at positions 0 and 1. Pair 0 adds only along the node (nothing new), pair 1 at
    position 1, pair 2 where the gradient is 0, pair 3 a negative output (ReLU: 0).
    Fails if the residual score does not project out the cell's nodes, or if either
    score skips the ReLU the projection applies."""
    evidence = Evidence(model=None, batch=None)
    evidence.signals = {0: _signals({0: [2, 0, 0, 0], 1: [0, 3, 0, 0], 2: [0, 0, 5, 0],
                                     3: [0, -3, 0, 0]},
                                    nodes=[1, 0, 0, 0], grad=[1, 1, 0, 0])}
    residual = get_score("residual").fn(evidence)[0]
    gradient = get_score("gradient").fn(evidence)[0]
    assert residual.tolist() == pytest.approx([0.0, 1.0, 0.0, 0.0], abs=1e-12)
    assert gradient.tolist() == [4.0, 9.0, 0.0, 0.0]   # (1*2)^2, (1*3)^2


def test_alpha_scores_by_hand():
    """Fails if alpha_cell is not each |alpha|'s share of its own cell's, or alpha_rms
    not |alpha| times the root mean square of the pair's output."""
    evidence = Evidence(model=None, batch=None)
    evidence.alphas = {0: torch.tensor([0.5, -1.5, 0.0, 2.0], dtype=torch.float64),
                       2: torch.tensor([0.1, 0.1, 0.2, 0.0], dtype=torch.float64)}
    evidence.signals = {i: _signals({0: [3, 4, 0, 0], 1: [1, 1, 1, 1], 2: [0, 0, 0, 2]},
                                    nodes=[1, 0, 0, 0], grad=[1, 1, 0, 0]) for i in (0, 2)}
    assert get_score("alpha").fn(evidence)[0].tolist() == [0.5, 1.5, 0.0, 2.0]
    assert get_score("alpha_cell").fn(evidence)[0].tolist() == [0.125, 0.375, 0.0, 0.5]
    assert get_score("alpha_cell").fn(evidence)[2].tolist() == pytest.approx(
        [0.25, 0.25, 0.5, 0.0])
    # RMS: sqrt((9 + 16) / 4) = 2.5, 1, 1; pair 3 (`none`) is never computed: 0.
    assert get_score("alpha_rms").fn(evidence)[0].tolist() == pytest.approx(
        [1.25, 1.5, 0.0, 0.0])


@pytest.mark.parametrize("name", sorted(PAIR_SCORES))
def test_every_score_gives_each_cell_a_finite_value_per_pair(grown, name):
    model, batch = grown
    scores = get_score(name).fn(Evidence(copy.deepcopy(model), batch))
    assert sorted(scores) == [0, 1, 2]
    for i, values in scores.items():
        assert values.dtype == torch.float64
        assert values.shape == (len(model.desc.cell_desc(i).candidate.pairs),)
        assert torch.isfinite(values).all()


def test_select_pairs_sums_each_kinds_cells_scores():
    _, grouped = grown_with_every_primitive()
    desc = grouped.desc
    state = {k: v.clone() for k, v in grouped.state_dict().items()}
    pairs = desc.normal.candidate.pairs
    a, b = _usable(desc, "normal")[:2]
    scores = {i: torch.zeros(len(pairs), dtype=torch.float64) for i in range(desc.cells)}
    scores[0][a], scores[0][b], scores[2][a], scores[2][b] = 0.6, 0.3, 0.5, 0.5
    assert select_pairs(desc, state, 1, scores=scores)["normal"] == [a]   # 1.1 > 0.8
    scores[2][b] = 0.9                                                   # 1.2 > 1.1
    assert select_pairs(desc, state, 1, scores=scores)["normal"] == [b]


@pytest.fixture(scope="module")
def parent():
    config = load_config("petridish_digits", ["model.init_channels=4"])
    desc = build_seed(config, cells=3, reductions=1, nodes=1)
    torch.manual_seed(0)
    return desc, weights_to_bytes(build_model(desc).state_dict())


@pytest.mark.parametrize("score", ["alpha", "residual"])
def test_the_search_phase_scores_with_the_configured_score(parent, score):
    """Fails if search.pair_score does not reach finalize (the child would follow
    |alpha| whatever the key says)."""
    config = load_config("petridish_digits", [
        "model.init_channels=4", "search.search_train.epochs=1",
        "dataset.max_train=128", f"search.pair_score={score}"])
    splits = load_splits(config.dataset, config.seed, keep_uint8=True)
    searched = search_phase(config, *parent, splits, JobContext(seed=0))
    if score == "alpha":
        assert searched.scores is None
        return
    pairs = searched.desc.normal.candidate.pairs
    assert sorted(searched.scores) == [0, 1, 2]
    # The finalized child follows the scores: make the pair of least |alpha| the best.
    least = {}
    for kind, cells in (("normal", [0, 2]), ("reduce", [1])):
        alpha = sum(searched.state[f"cells.{i}.candidate.alpha"].abs() for i in cells)
        least[kind] = min(_usable(searched.desc, kind), key=lambda m: float(alpha[m]))
        for i in cells:
            searched.scores[i][least[kind]] = 1e9
    _, _, notes = finalize_child(config, searched, "alpha", seed=0)
    for kind in ("normal", "reduce"):
        assert list(pairs[least[kind]]) in notes["chosen"][kind]
    plain = Searched(searched.desc, searched.state, searched.result)
    _, _, plain_notes = finalize_child(config, plain, "alpha", seed=0)
    assert plain_notes["chosen"] != notes["chosen"]


def test_an_unknown_pair_score_is_a_config_error():
    with pytest.raises(ConfigError, match=r"search.pair_score: unknown pair score "
                                          r"'residuals'.*did you mean residual"):
        load_config("petridish_digits", ["search.pair_score=residuals"])


def test_search_alpha_lr_sets_the_alphas_own_learning_rate(parent):
    """Fails if search.alpha_lr does not reach the alphas' optimizer group: 0 must be
    the weights' rate exactly (bit-identical phase), ten times it must move the alphas
    further from where they start."""
    def phase(*extra):
        config = load_config("petridish_digits", [
            "model.init_channels=4", "search.search_train.epochs=1",
            "dataset.max_train=128", *extra])
        splits = load_splits(config.dataset, config.seed, keep_uint8=True)
        torch.manual_seed(0)  # the candidate's fresh weights, as run_search seeds them
        state = search_phase(config, *parent, splits, JobContext(seed=0)).state
        return torch.cat([state[f"cells.{i}.candidate.alpha"] for i in range(3)])
    default, same, fast = (phase(), phase("search.alpha_lr=0.05"),
                           phase("search.alpha_lr=0.5"))
    assert torch.equal(default, same)
    assert (fast - 0.1).abs().mean() > 3 * (default - 0.1).abs().mean()
