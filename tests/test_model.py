"""The module built from a description: weights in and out, drop-path, the aux head."""

import copy
import io
from dataclasses import replace

import pytest
import torch

from petrinas import load_model
from petrinas.config_loader import load_config
from petrinas.errors import InputError, UntrustedFileError
from petrinas.model_desc import (CellDesc, EdgeDesc, ModelDesc, NodeDesc, OpDesc, build_model,
                                 build_seed)
from petrinas.model_desc.model import load_weights, save_weights


@pytest.fixture(scope="module", autouse=True)
def _threads(one_thread):
    pass


@pytest.fixture(scope="module")
def config():
    return load_config("petridish_digits", ["model.init_channels=4"])


def _x(n=8, seed=0):
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def _trained_like(model, steps=3):
    """A few SGD steps so weights and BN statistics are not their initial values."""
    torch.manual_seed(1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for step in range(steps):
        x, y = _x(16, seed=10 + step), torch.arange(16) % 10
        out = model(x)
        logits = out[0] if isinstance(out, tuple) else out
        opt.zero_grad()
        torch.nn.functional.cross_entropy(logits, y).backward()
        opt.step()
    return model.eval()


def _save(folder, desc, model):
    folder.mkdir(parents=True, exist_ok=True)
    desc.save(folder / "desc.yaml")
    save_weights(model.state_dict(), folder / "weights.pt")


def test_load_model_round_trip(config, tmp_path):
    desc = build_seed(config, cells=3, reductions=1, nodes=2)
    torch.manual_seed(0)
    model = _trained_like(build_model(desc))
    _save(tmp_path / "trial", desc, model)
    x = _x()
    with torch.no_grad():
        want = model(x)
    for path in (tmp_path / "trial", tmp_path / "trial" / "desc.yaml", str(tmp_path / "trial")):
        loaded = load_model(path)
        assert not loaded.training
        assert all(not m.training for m in loaded.modules())
        assert loaded.desc == desc
        with torch.no_grad():
            assert torch.equal(loaded(x), want)
    state = load_weights(tmp_path / "trial" / "weights.pt")
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_weights_of_another_description_do_not_load(config, tmp_path):
    desc = build_seed(config, cells=3, reductions=1, nodes=2)
    other = build_seed(config, cells=3, reductions=1, nodes=1)
    _save(tmp_path / "t", desc, build_model(other))
    with pytest.raises(InputError, match=r"weights.pt: cannot load into the model of .*"
                                         r"desc.yaml \((Missing|Unexpected|size mismatch)"):
        load_model(tmp_path / "t")


class _Payload:
    """Unpickling this would run os.system and create the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


class _OpenPayload:
    """Unpickling this would open (and create) the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_refusal_reads_plain_in_a_log(tmp_path):
    """torch words some refusals in bold for a terminal (ESC[1m ... ESC[0m); the line
    goes to search.log and pool.tsv. Fails if the escape codes get through."""
    buffer = io.BytesIO()
    torch.save({"weight": _OpenPayload(tmp_path / "pwned")}, buffer, pickle_protocol=2)
    (tmp_path / "weights.pt").write_bytes(buffer.getvalue())
    with pytest.raises(UntrustedFileError) as info:
        load_weights(tmp_path / "weights.pt")
    assert "do those steps only if you trust the source of the checkpoint." in str(info.value)
    assert "\x1b" not in str(info.value)
    assert not (tmp_path / "pwned").exists()


def test_pickle_payload_in_weights_is_refused(config, tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "evil"
    folder.mkdir()
    desc = build_seed(config, cells=1, reductions=0, nodes=1)
    desc.save(folder / "desc.yaml")
    state = dict(build_model(desc).state_dict())
    state["classifier.weight"] = _Payload(marker)
    torch.save(state, folder / "weights.pt")
    assert not marker.exists()
    with pytest.raises(UntrustedFileError) as info:
        load_model(folder / "desc.yaml")
    assert "weights.pt" in str(info.value)
    assert not marker.exists()
    with pytest.raises(UntrustedFileError):
        load_weights(folder / "weights.pt")
    assert not marker.exists()


def test_weights_that_are_not_a_state_dict_are_refused(config, tmp_path):
    folder = tmp_path / "odd"
    desc = build_seed(config, cells=1, reductions=0, nodes=1)
    folder.mkdir()
    desc.save(folder / "desc.yaml")
    torch.save([torch.zeros(2)], folder / "weights.pt")
    with pytest.raises(UntrustedFileError):
        load_model(folder)


def test_drop_path_changes_train_outputs_only(config):
    desc = build_seed(config, cells=3, reductions=1, nodes=2)
    torch.manual_seed(0)
    model = _trained_like(build_model(desc))
    x = _x(16)
    with torch.no_grad():
        model.eval()
        model.drop_path_prob = 0.0
        eval_plain = model(x)
        model.drop_path_prob = 0.5
        eval_drop = model(x)
        assert torch.equal(eval_plain, eval_drop)

        plain = copy.deepcopy(model).train()  # train mode updates BN statistics: copies
        plain.drop_path_prob = 0.0
        torch.manual_seed(3)
        train_plain = plain(x)
        dropped = copy.deepcopy(model).train()
        dropped.drop_path_prob = 0.5
        torch.manual_seed(3)
        train_drop = dropped(x)
        assert not torch.allclose(train_plain, train_drop)
        assert torch.isfinite(train_drop).all()
        # Same seed, same mask: drop-path is deterministic under the global RNG.
        again = copy.deepcopy(model).train()
        again.drop_path_prob = 0.5
        torch.manual_seed(3)
        assert torch.equal(again(x), train_drop)


def test_aux_head(config):
    aux_config = load_config("petridish_digits", ["model.init_channels=4", "model.aux_head=true"])
    desc = build_seed(aux_config, cells=3, reductions=1, nodes=1)
    assert desc.aux_head
    torch.manual_seed(0)
    model = build_model(desc).eval()
    assert any(k.startswith("aux_head.") for k in model.state_dict())
    x = _x(4)
    with torch.no_grad():
        logits, aux_logits = model(x, with_aux=True)
        plain = model(x)
    assert logits.shape == aux_logits.shape == (4, 10)
    assert torch.equal(logits, plain)
    assert not torch.allclose(logits, aux_logits)

    no_aux = build_model(build_seed(config, cells=3, reductions=1, nodes=1))
    assert no_aux.aux_head is None
    assert not any(k.startswith("aux_head.") for k in no_aux.state_dict())


def test_aux_head_trains_with_the_trainer(tmp_path):
    from petrinas.data import load_splits
    from petrinas.train.trainer import train

    aux_config = load_config("petridish_digits", [
        "model.init_channels=4", "model.aux_head=true", "search.seed_train.aux_weight=0.4",
        "search.seed_train.epochs=1", "dataset.max_train=256"])
    desc = build_seed(aux_config, cells=3, reductions=1, nodes=1)
    torch.manual_seed(0)
    model = build_model(desc)
    before = model.aux_head.classifier.weight.detach().clone()
    splits = load_splits(aux_config.dataset, 0)
    train(model, splits, aux_config.search.seed_train, seed=0, eval_test=False)
    assert not torch.equal(model.aux_head.classifier.weight, before)


def test_unknown_op_names_the_op(config):
    desc = build_seed(config, cells=1, reductions=0, nodes=1)
    cell = CellDesc(nodes=(NodeDesc(edges=(EdgeDesc(1, OpDesc("sep_conv_9x9")),)),))
    bad = desc.with_cells(cell, cell)
    with pytest.raises(KeyError, match="sep_conv_9x9"):
        build_model(bad)


def test_unknown_op_from_a_file(config, tmp_path):
    desc = build_seed(config, cells=1, reductions=0, nodes=1)
    data = desc.to_dict()
    data["normal"]["nodes"][0]["edges"][0]["op"] = "conv_7x7"
    data["reduce"] = data["normal"]
    path = tmp_path / "desc.yaml"
    ModelDesc.from_dict(data).save(path)
    with pytest.raises(KeyError, match="conv_7x7"):
        load_model(path)


def test_state_dict_keys_follow_the_documented_layout(config):
    desc = build_seed(config, cells=3, reductions=1, nodes=2)
    keys = build_model(desc).state_dict().keys()
    assert "cells.0.nodes.1.edges.0.dw1.weight" in keys
    assert "cells.2.proj.conv.weight" in keys
    assert "classifier.weight" in keys and any(k.startswith("stem.") for k in keys)
    proj = build_model(desc).cells[2].proj.conv.weight
    assert proj.shape == (8, 2 * 8, 1, 1)


def test_build_model_is_deterministic_under_a_seed(config):
    desc = build_seed(config, cells=3, reductions=1, nodes=1)
    torch.manual_seed(5)
    a = build_model(desc).state_dict()
    torch.manual_seed(5)
    b = build_model(replace(desc, meta={"other": 1})).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
