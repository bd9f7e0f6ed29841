"""search.duplicate_retries: a child whose top-k pairs make a model the run already has
tries the next-best pair sets, from the same search phase, before it counts as a
duplicate."""

import pytest

from petrinas.config_loader import load_config
from petrinas.model_desc import build_model, build_seed
from petrinas.model_desc.grow import next_best_choices
from petrinas.model_desc.model import weights_to_bytes
from petrinas.train.pipeline import JobContext, run_search


@pytest.fixture(scope="module", autouse=True)
def _threads(one_thread):
    pass


def test_next_best_choices_swap_one_kinds_last_pair_at_a_time():
    ranked = {"normal": [5, 1, 8, 2], "reduce": [3, 0, 4]}
    assert list(next_best_choices(ranked, 2)) == [
        {"normal": [5, 8], "reduce": [0, 3]},   # normal's 2nd (1) -> its 3rd (8)
        {"normal": [1, 5], "reduce": [3, 4]},   # reduce's 2nd (0) -> its 3rd (4)
        {"normal": [2, 5], "reduce": [0, 3]},   # normal's 2nd -> its 4th; reduce has none
    ]
    assert list(next_best_choices({"normal": [1, 2], "reduce": [0]}, 2)) == []


class FirstTaken:
    """A claim that finds the first architecture asked for owned by t0001."""
    def __init__(self, taken: int = 1):
        self.asked: list[str] = []
        self.taken = taken

    def __call__(self, arch_hash: str):
        self.asked.append(arch_hash)
        return "t0001" if len(self.asked) <= self.taken else None


@pytest.fixture(scope="module")
def parent():
    config = load_config("petridish_digits", ["model.init_channels=4"])
    desc = build_seed(config, cells=3, reductions=1, nodes=1)
    return desc.to_dict(), weights_to_bytes(build_model(desc).state_dict())


def _config(retries: int):
    return load_config("petridish_digits", [
        "model.init_channels=4", "search.search_train.epochs=1",
        "search.post_train.epochs=1", "dataset.max_train=128",
        f"search.duplicate_retries={retries}"])


def test_without_retries_a_taken_model_is_a_duplicate(parent):
    claim = FirstTaken()
    out = run_search(_config(0), *parent, JobContext(seed=3), claim=claim)
    assert out.row["duplicate_of"] == "t0001" and out.weights is None
    assert len(claim.asked) == 1 and out.row["arch_hash"] == claim.asked[0]


def test_a_retry_trains_the_next_best_model_the_run_lacks(parent):
    claim = FirstTaken(taken=2)
    out = run_search(_config(3), *parent, JobContext(seed=3), claim=claim)
    assert "duplicate_of" not in out.row and out.weights is not None
    assert out.notes["duplicate_retry"] == 2
    assert len(set(claim.asked)) == 3 and out.row["arch_hash"] == claim.asked[2]
    # The same search phase: its history is the duplicate's.
    plain = run_search(_config(0), *parent, JobContext(seed=3), claim=FirstTaken())
    def losses(output):
        return [(e["train_loss"], e["val_loss"]) for e in output.history["search_train"]["history"]]
    assert losses(out) == losses(plain)


def test_when_every_retry_is_taken_it_is_a_duplicate_of_the_top_k_owner(parent):
    claim = FirstTaken(taken=99)
    out = run_search(_config(2), *parent, JobContext(seed=3), claim=claim)
    assert out.row["duplicate_of"] == "t0001" and len(claim.asked) == 3
    assert out.row["arch_hash"] == claim.asked[0]   # the top-k model, as without retries
