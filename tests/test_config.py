"""Config files, `extends`, `--set` overrides and validation: every error is one line
that names the key (or the file)."""

import textwrap

import pytest
import yaml

from petrinas.config import CONFS_DIR, parse_override
from petrinas.config_loader import config_from_dict, load_config
from petrinas.errors import ConfigError


def _write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def _error(*overrides, conf="petridish_digits") -> str:
    with pytest.raises(ConfigError) as info:
        load_config(conf, overrides)
    message = str(info.value)
    assert "\n" not in message, message
    return message


# ------------------------------------------------------------------------- shipped confs

@pytest.mark.parametrize("name", ["petridish", "petridish_digits"])
def test_shipped_confs_load_by_name_and_path(name):
    by_name = load_config(name)
    by_file = load_config(f"{name}.yaml")
    by_path = load_config(CONFS_DIR / f"{name}.yaml")
    assert by_name == by_file == by_path
    assert by_name.name == name


def test_digits_conf_extends_the_paper_conf():
    paper, digits = load_config("petridish"), load_config("petridish_digits")
    raw = yaml.safe_load((CONFS_DIR / "petridish_digits.yaml").read_text())
    assert raw["extends"] == "petridish.yaml"
    assert paper.dataset.name == "cifar10" and digits.dataset.name == "digits"
    # Keys the digits file sets win (lists replaced as a whole); the others come from
    # petridish.yaml, key by key.
    paper_dict, digits_dict = paper.to_dict(), digits.to_dict()
    set_here = unset = 0
    for section, values in paper_dict.items():
        if not isinstance(values, dict):
            continue
        for key, value in values.items():
            if key in raw.get(section, {}):
                if not isinstance(value, dict):
                    assert digits_dict[section][key] == raw[section][key], (section, key)
                    set_here += 1
            else:
                assert digits_dict[section][key] == value, (section, key)
                unset += 1
    assert set_here and unset
    assert digits.model.candidate_ops == raw["model"]["candidate_ops"]
    # A phase written as {<<: *anchor, epochs: n} takes the anchor's other keys.
    assert digits.search.search_train.lr == digits.search.seed_train.lr
    assert digits.search.search_train.epochs == raw["search"]["search_train"]["epochs"]


def test_load_config_defaults_to_digits():
    assert load_config().dataset.name == "digits"


def test_missing_file_is_a_config_error(tmp_path):
    message = _error(conf=tmp_path / "nope.yaml")
    assert "nope.yaml" in message


# ------------------------------------------------------------------------------ extends

def test_extends_merges_key_by_key_later_wins(tmp_path):
    _write(tmp_path / "base.yaml", """\
        seed: 3
        dataset: {name: digits, val_fraction: 0.3, test_fraction: 0.25}
        model:
          init_channels: 6
          candidate_ops: [sep_conv_3x3, skip_connect, none]
        search:
          seeds: {cells: [1, 3], reductions: [0, 1], nodes: [1, 2]}
          seed_train: {epochs: 3, lr: 0.1}
    """)
    _write(tmp_path / "mid.yaml", """\
        extends: base.yaml
        dataset: {val_fraction: 0.2}
        search:
          seed_train: {lr: 0.2}
    """)
    child = _write(tmp_path / "child.yaml", """\
        extends: [mid.yaml]
        model:
          candidate_ops: [max_pool_3x3]
        search:
          seed_train: {batch_size: 16}
    """)
    config = load_config(child)
    assert config.name == "child"
    assert config.seed == 3
    assert config.dataset.val_fraction == 0.2            # mid wins over base
    assert config.dataset.test_fraction == 0.25          # base's key survives
    assert config.model.init_channels == 6
    assert config.model.candidate_ops == ["max_pool_3x3"]  # replaced, not merged
    train = config.search.seed_train
    assert (train.epochs, train.lr, train.batch_size) == (3, 0.2, 16)
    assert config.search.seeds.cells == [1, 3]


def test_extends_list_later_file_wins(tmp_path):
    _write(tmp_path / "a.yaml", "seed: 1\nmodel: {init_channels: 5, top_k: 2}\n")
    _write(tmp_path / "b.yaml", "seed: 2\nmodel: {init_channels: 7}\n")
    child = _write(tmp_path / "c.yaml",
                   "extends: [petridish_digits.yaml, a.yaml, b.yaml]\nsearch: {l1: 0.01}\n")
    config = load_config(child)
    assert config.seed == 2
    assert config.model.init_channels == 7
    assert config.model.top_k == 2
    assert config.search.l1 == 0.01
    assert config.dataset.name == "digits"  # found under confs/


def test_extends_cycle_is_an_error(tmp_path):
    _write(tmp_path / "a.yaml", "extends: b.yaml\nseed: 1\n")
    _write(tmp_path / "b.yaml", "extends: a.yaml\nseed: 2\n")
    message = _error(conf=tmp_path / "a.yaml")
    assert "extends" in message and "a.yaml" in message


def test_extends_self_is_an_error(tmp_path):
    message = _error(conf=_write(tmp_path / "me.yaml", "extends: me.yaml\n"))
    assert "me.yaml" in message


def test_extends_missing_file_names_it(tmp_path):
    message = _error(conf=_write(tmp_path / "c.yaml", "extends: ghost.yaml\n"))
    assert "ghost.yaml" in message


# ---------------------------------------------------------------------------- overrides

@pytest.mark.parametrize("text, key, value", [
    ("search.max_trials=20", "search.max_trials", 20),
    ("search.l1=1e-3", "search.l1", 0.001),
    ("search.l1=1.5e-2", "search.l1", 0.015),
    ("eval.enabled=true", "eval.enabled", True),
    ("eval.enabled=false", "eval.enabled", False),
    ("model.candidate_ops=[sep_conv_3x3, none]", "model.candidate_ops", ["sep_conv_3x3", "none"]),
    ("dataset.root=/data/x", "dataset.root", "/data/x"),
    ("dataset.root=", "dataset.root", ""),
])
def test_parse_override_yaml_scalars(text, key, value):
    parsed_key, parsed = parse_override(text)
    assert parsed_key == key
    assert parsed == value and type(parsed) is type(value)


def test_overrides_apply_last_with_types():
    config = load_config("petridish_digits", [
        "search.max_trials=20", "search.l1=1e-3", "eval.enabled=true",
        "model.candidate_ops=[sep_conv_3x3, none]", "search.seed_train.epochs=2",
        "search.max_macs=2e6", "seed=7"])
    assert config.search.max_trials == 20 and type(config.search.max_trials) is int
    assert config.search.l1 == 0.001 and type(config.search.l1) is float
    assert config.eval.enabled is True
    assert config.model.candidate_ops == ["sep_conv_3x3", "none"]
    assert config.search.seed_train.epochs == 2
    assert config.search.search_train.epochs == 2  # untouched sibling
    assert config.search.max_macs == 2e6
    assert config.seed == 7


def test_float_without_dot_in_a_file(tmp_path):
    conf = _write(tmp_path / "c.yaml",
                  "extends: petridish_digits.yaml\nsearch: {l1: 1e-4, max_macs: 5e6}\n")
    config = load_config(conf)
    assert config.search.l1 == 1e-4 and config.search.max_macs == 5e6


@pytest.mark.parametrize("text", ["no_equals_sign", "=3"])
def test_malformed_override(text):
    with pytest.raises(ConfigError):
        parse_override(text)


# ---------------------------------------------------------------------------- validation

def test_unknown_top_level_key():
    message = _error("sead=1")
    assert "sead" in message and "did you mean seed" in message


def test_unknown_nested_key_names_full_key_and_suggests():
    message = _error("search.max_trails=5")
    assert "search.max_trails" in message
    assert "did you mean search.max_trials?" in message


def test_unknown_key_deeper_down():
    message = _error("search.seed_train.epoch=5")
    assert "search.seed_train.epoch" in message
    assert "search.seed_train.epochs" in message


def test_unknown_key_in_a_file(tmp_path):
    conf = _write(tmp_path / "c.yaml", "extends: petridish_digits.yaml\nmodel: {init_chanels: 4}\n")
    message = _error(conf=conf)
    assert "model.init_chanels" in message and "model.init_channels" in message


@pytest.mark.parametrize("override, key", [
    ("search.max_trials=abc", "search.max_trials"),
    ("search.max_trials=2.5", "search.max_trials"),
    ("search.l1=abc", "search.l1"),
    ("eval.enabled=3", "eval.enabled"),
    ("model.candidate_ops=sep_conv_3x3", "model.candidate_ops"),
    ("search.seed_train=5", "search.seed_train"),
    ("dataset.name=3", "dataset.name"),
])
def test_wrong_type_names_the_key(override, key):
    message = _error(override)
    assert message.startswith(key), message


@pytest.mark.parametrize("override, key", [
    ("search.convex_hull_eps=-0.1", "search.convex_hull_eps"),
    ("resources.cpus_per_job=0", "resources.cpus_per_job"),
    ("search.max_trials=0", "search.max_trials"),
    ("dataset.val_fraction=0.95", "dataset.val_fraction"),
    ("search.seed_train.momentum=1", "search.seed_train.momentum"),
    ("seed=-1", "seed"),
])
def test_out_of_range_names_the_key(override, key):
    message = _error(override)
    assert message.startswith(key) and "out of range" in message, message


def test_bad_choice_lists_the_choices():
    message = _error("dataset.name=mnist")
    assert "dataset.name" in message and "mnist" in message
    for choice in ("digits", "cifar10", "cifar100", "imagefolder", "npz", "synthetic"):
        assert choice in message


def test_close_choice_is_suggested():
    assert "did you mean cifar10" in _error("dataset.name=cifar1O")


def test_seed_ranges_without_a_valid_seed():
    message = _error("search.seeds.cells=[1, 2]", "search.seeds.reductions=[1, 1]")
    assert "search.seeds" in message


@pytest.mark.parametrize("value", ["[3, 1]", "[2]", "[0, 2]"])
def test_malformed_seed_range(value):
    assert "search.seeds.cells" in _error(f"search.seeds.cells={value}")


@pytest.mark.parametrize("value", ["[32, 32]", "[3, 0, 32]", "[3, 32, 32, 1]"])
def test_malformed_synthetic_shape(value):
    message = _error(f"dataset.synthetic_shape={value}")
    assert message.startswith("dataset.synthetic_shape") and "[C, H, W]" in message, message


def test_compile_with_drop_path_is_refused():
    message = _error("eval.train.compile=true", "eval.train.drop_path=0.2")
    assert message.startswith("eval.train.compile") and "drop_path" in message, message


def test_cuda_graphs_is_a_key_of_every_phase_and_not_with_compile():
    """Fails if a phase lacks the key, or if graphs and compile may be asked for at once."""
    phases = ("search.seed_train", "search.search_train", "search.post_train", "eval.train")
    config = load_config("petridish_digits", [f"{p}.cuda_graphs=true" for p in phases])
    assert all(getattr(config.search, p).cuda_graphs for p in
               ("seed_train", "search_train", "post_train")) and config.eval.train.cuda_graphs
    message = _error("search.post_train.cuda_graphs=true", "search.post_train.compile=true")
    assert message.startswith("search.post_train.cuda_graphs") and "compile" in message


def test_unknown_candidate_op_suggests_nearest():
    message = _error("model.candidate_ops=[sep_conv_3x3, dil_conv_3x4]")
    assert "model.candidate_ops[1]" in message
    assert "dil_conv_3x4" in message and "did you mean dil_conv_3x3?" in message


def test_unknown_seed_op():
    message = _error("model.seed_op=sepconv_3x3")
    assert "model.seed_op" in message and "sep_conv_3x3" in message


def test_candidate_ops_need_more_than_none():
    assert "model.candidate_ops" in _error("model.candidate_ops=[none]")


def test_aux_weight_needs_aux_head():
    assert "search.post_train.aux_weight" in _error("search.post_train.aux_weight=0.4")
    config = load_config("petridish_digits", ["search.post_train.aux_weight=0.4",
                                              "model.aux_head=true"])
    assert config.search.post_train.aux_weight == 0.4


def test_dataset_root_required_for_folders():
    assert "dataset.root" in _error("dataset.name=npz", "dataset.root=")


# ------------------------------------------------------------------------------- files

def test_yaml_syntax_error_names_file_and_line(tmp_path):
    conf = _write(tmp_path / "broken.yaml", "seed: 1\nmodel:\n  init_channels: [4\n  top_k: 2\n")
    message = _error(conf=conf)
    assert "broken.yaml" in message
    assert "line " in message
    line = int(message.split("line ")[1].split(":")[0])
    assert 3 <= line <= 5


def test_top_level_must_be_a_mapping(tmp_path):
    assert "list.yaml" in _error(conf=_write(tmp_path / "list.yaml", "- 1\n- 2\n"))


def test_python_tag_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    conf = _write(tmp_path / "evil.yaml",
                  f'seed: !!python/object/apply:os.system ["touch {marker}"]\n')
    message = _error(conf=conf)
    assert "evil.yaml" in message
    assert not marker.exists()


def test_python_tag_in_an_extended_file(tmp_path):
    marker = tmp_path / "pwned"
    _write(tmp_path / "base.yaml",
           f'!!python/object/apply:os.system ["touch {marker}"]\n')
    conf = _write(tmp_path / "child.yaml", "extends: base.yaml\n")
    assert "base.yaml" in _error(conf=conf)
    assert not marker.exists()


def test_python_tag_in_an_override(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(ConfigError):
        load_config("petridish_digits",
                    [f'dataset.root=!!python/object/apply:os.system ["touch {marker}"]'])
    assert not marker.exists()


# ------------------------------------------------------------------------ run dir, dicts

def test_with_run_dir_substitutes(tmp_path):
    config = load_config("petridish_digits",
                         ["dataset.root=${run_dir}/data", "dataset.name=npz"])
    assert config.dataset.root == "${run_dir}/data"
    filled = config.with_run_dir(tmp_path)
    assert filled.dataset.root == f"{tmp_path}/data"
    assert config.dataset.root == "${run_dir}/data"  # a copy; the original is unchanged
    assert filled.search == config.search


def test_dict_round_trip():
    for name in ("petridish", "petridish_digits"):
        config = load_config(name, ["search.l1=1e-3"])
        data = config.to_dict()
        again = config_from_dict(data)
        assert again == config
        assert again.to_dict() == data


def test_from_dict_validates():
    data = load_config("petridish_digits").to_dict()
    data["search"]["max_trails"] = 3
    with pytest.raises(ConfigError, match="search.max_trails"):
        config_from_dict(data)


def test_from_dict_checks_op_names_against_the_registry():
    data = load_config("petridish_digits").to_dict()
    data["model"]["seed_op"] = "sepconv_3x3"
    with pytest.raises(ConfigError, match=r"model.seed_op: unknown op 'sepconv_3x3' "
                                          r"\(did you mean sep_conv_3x3\?\)"):
        config_from_dict(data)
