"""The Python API of DESIGN section 4, used exactly as written there, and the digits
criterion: a seed of the default config reaches >= 95% test accuracy in 10 epochs."""

import re
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _threads(one_thread):
    pass


def test_documented_imports():
    import petrinas
    from petrinas import load_config, load_model  # noqa: F401
    from petrinas.data import load_dataset  # noqa: F401
    from petrinas.model_desc import ModelDesc, build_model, build_seed, cost  # noqa: F401

    assert callable(load_config) and callable(load_model)
    assert {"load_config", "load_model"} <= set(petrinas.__all__)
    with pytest.raises(AttributeError):
        petrinas.no_such_name  # noqa: B018


def test_build_seed_build_model_cost_save_load(tmp_path):
    from petrinas import load_config
    from petrinas.model_desc import ModelDesc, build_model, build_seed, cost

    config = load_config("petridish_digits")
    desc = build_seed(config, cells=3, reductions=1, nodes=1)
    assert isinstance(desc, ModelDesc)
    model = build_model(desc)
    assert isinstance(model, torch.nn.Module)

    measured = cost(model, desc.input_shape)
    assert set(measured) == {"macs", "params"}
    assert all(isinstance(v, int) and v > 0 for v in measured.values())
    assert measured["params"] == sum(p.numel() for p in model.parameters())
    assert cost(model, (4, *desc.input_shape))["macs"] == measured["macs"]  # per example
    bigger = cost(build_model(build_seed(config, cells=3, reductions=1, nodes=2)),
                  desc.input_shape)
    assert bigger["macs"] > measured["macs"] and bigger["params"] > measured["params"]

    path = tmp_path / "desc.yaml"
    desc.save(path)
    assert ModelDesc.load(path) == desc
    assert ModelDesc.load(str(path)).arch_hash() == desc.arch_hash()


def test_load_dataset_is_a_torch_dataset():
    from petrinas.data import load_dataset

    test = load_dataset("digits", split="test")
    assert isinstance(test, torch.utils.data.Dataset)
    x, y = test[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert len(test) == 359  # 20% of the 1797 digits
    again = load_dataset("digits", split="test", seed=5)
    assert torch.equal(again.x, test.x)  # the test split does not follow the seed


@pytest.fixture(scope="module")
def digits_seed(tmp_path_factory):
    """The digits criterion's model: seed (cells=3, reductions=1, nodes=2) of the default
    config, trained with its seed_train settings (10 epochs), saved the way a run does."""
    from petrinas import load_config
    from petrinas.train.pipeline import JobContext, run_seed

    # The digits config's seed_train settings, at the criterion's 10 epochs.
    config = load_config("petridish_digits", ["search.seed_train.epochs=10"])
    out = run_seed(config, (3, 1, 2), JobContext(seed=config.seed))
    folder = tmp_path_factory.mktemp("run") / "gallery" / "seed_3_1_2"
    folder.mkdir(parents=True)
    from petrinas.model_desc import ModelDesc
    ModelDesc.from_dict(out.desc).save(folder / "desc.yaml")
    (folder / "weights.pt").write_bytes(out.weights)
    return out, folder


def test_digits_seed_reaches_95_percent(digits_seed):
    out, _ = digits_seed
    row = out.row
    assert (row["cells"], row["reductions"], row["nodes"]) == (3, 1, 2)
    assert row["epochs"] == 10
    assert row["test_top1"] >= 0.95, row
    assert row["val_top1"] >= 0.9, row


def test_loaded_model_reproduces_the_reported_accuracy(digits_seed):
    from petrinas import load_model
    from petrinas.data import load_dataset

    out, folder = digits_seed
    model = load_model(f"{folder}/desc.yaml")
    assert not model.training
    test = load_dataset("digits", split="test")
    correct = 0
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(test, batch_size=100):
            correct += int((model(x).argmax(dim=1) == y).sum())
    accuracy = correct / len(test)
    assert accuracy == pytest.approx(out.row["test_top1"], abs=1e-12)
    assert accuracy >= 0.95

    # The folder form works too, and gives the very same outputs.
    again = load_model(folder)
    with torch.no_grad():
        assert torch.equal(again(test.x[:50]), model(test.x[:50]))


API_PAGE = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"


def test_every_public_name_is_documented_once_and_every_documented_name_exists():
    """docs/python-api.md lists the public names (petrinas.__all__ and
    petrinas.model_desc.__all__) in its table, each in one row, and every
    `petrinas.<module>.<name>` it lists exists. Fails if a name is added to an __all__
    without a row, or the page names a function that was renamed or removed."""
    import importlib

    import petrinas
    import petrinas.model_desc

    rows = [line for line in API_PAGE.read_text().splitlines() if line.startswith("| `")]
    firsts = [row.split(" | ", 1)[0] for row in rows]
    public = [f"petrinas.{n}" for n in petrinas.__all__] + \
        [f"petrinas.model_desc.{n}" for n in petrinas.model_desc.__all__]
    for name in public:
        module, _, short = name.rpartition(".")
        # A row names it in full, or by its short name after a name of its module.
        named = [f for f in firsts if re.search(rf"`{re.escape(name)}[`(]", f)
                 or (f"`{short}`" in f and f"`{module}." in f)]
        assert len(named) == 1, (name, named)
    for first in firsts:
        for dotted in re.findall(r"`(petrinas(?:\.\w+)+)", first):
            module, _, attr = dotted.rpartition(".")
            assert hasattr(importlib.import_module(module), attr), dotted


def test_the_api_page_example_runs_as_written(tmp_path, monkeypatch):
    """The page's first example (build, cost, save, load a seed) runs in a fresh folder.
    Fails if a call it shows changed its signature or result."""
    block = API_PAGE.read_text().split("```python\n")[1].split("```")[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(block, str(API_PAGE), "exec"), {})
    assert (tmp_path / "desc.yaml").is_file()
