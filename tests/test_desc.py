"""ModelDesc: plain-data round trips, a structure hash, safe loading, structural checks."""

from dataclasses import replace

import json

import pytest

import yaml

from petrinas.errors import UntrustedFileError
from petrinas.model_desc import CandidateDesc, CellDesc, EdgeDesc, ModelDesc, NodeDesc, OpDesc
from petrinas.model_desc.desc import reduction_indices


def _edge(i, op):
    return EdgeDesc(i, OpDesc(op))


def _desc(**overrides) -> ModelDesc:
    normal = CellDesc(nodes=(
        NodeDesc(edges=(_edge(1, "sep_conv_3x3"), _edge(0, "skip_connect"))),
        NodeDesc(edges=(_edge(2, "dil_conv_3x3"), _edge(1, "max_pool_3x3"))),
    ))
    reduce = CellDesc(
        nodes=(NodeDesc(edges=(_edge(0, "avg_pool_3x3"),)),
               NodeDesc(edges=(_edge(2, "mbconv_e2"), _edge(0, "sep_conv_5x5")))),
        candidate=CandidateDesc(inputs=(0, 1, 2, 3), ops=("sep_conv_3x3", "none")))
    fields = dict(cells=5, reductions=2, init_channels=8, stem_multiplier=2, num_classes=10,
                  input_shape=(1, 8, 8), normal=normal, reduce=reduce, aux_head=True,
                  meta={"parent": "t3", "note": [1, 2]})
    fields.update(overrides)
    return ModelDesc(**fields)


def test_dict_round_trip():
    desc = _desc()
    data = desc.to_dict()
    again = ModelDesc.from_dict(data)
    assert again == desc
    assert again.meta == desc.meta
    assert again.arch_hash() == desc.arch_hash()
    assert again.to_dict() == data
    assert again.reduce.candidate.pairs == desc.reduce.candidate.pairs


def test_save_load_round_trip(tmp_path):
    desc = _desc()
    path = tmp_path / "sub" / "desc.yaml"
    desc.save(path)
    loaded = ModelDesc.load(path)
    assert loaded == desc
    assert loaded.meta == desc.meta
    assert loaded.arch_hash() == desc.arch_hash()
    assert isinstance(loaded.input_shape, tuple)
    assert not list(path.parent.glob(".*tmp*"))  # the atomic write left no temp file


def test_saved_yaml_is_plain_and_readable(tmp_path):
    path = tmp_path / "desc.yaml"
    _desc().save(path)
    text = path.read_text()
    lines = text.splitlines()
    assert lines[0].startswith('{"format": 1,') and lines[-1].startswith(' "meta": ')
    assert ' "cells": 5,' in lines and '"op": "sep_conv_3x3"' in text  # one key a line
    assert "!!" not in text  # no tags: any YAML (or JSON) reader can load it
    assert json.loads(text) == _desc().to_dict()
    data = yaml.safe_load(text)
    assert data["cells"] == 5 and data["normal"]["nodes"][0]["edges"][0] == {
        "input": 1, "op": "sep_conv_3x3"}


def test_arch_hash_ignores_meta():
    desc = _desc()
    other = replace(desc, meta={"completely": "different"})
    assert other == desc
    assert other.arch_hash() == desc.arch_hash()
    assert len(desc.arch_hash()) == 16


def _first_node(desc, *edges):
    """`desc` with the normal cell's first node replaced by one of these edges."""
    nodes = (NodeDesc(edges=tuple(_edge(i, op) for i, op in edges)),) + desc.normal.nodes[1:]
    return desc.with_cells(replace(desc.normal, nodes=nodes), desc.reduce)


@pytest.mark.parametrize("change", [
    lambda d: _first_node(d, (1, "sep_conv_5x5"), (0, "skip_connect")),   # another op
    lambda d: _first_node(d, (0, "sep_conv_3x3"), (0, "skip_connect")),   # another input
    lambda d: _first_node(d, (1, "sep_conv_3x3")),                        # an edge fewer
    lambda d: d.with_cells(d.normal, replace(d.reduce, candidate=None)),
    lambda d: replace(d, cells=6),
    lambda d: replace(d, init_channels=16),
    lambda d: replace(d, aux_head=False),
])
def test_arch_hash_changes_with_the_structure(change):
    desc = _desc()
    changed = change(desc)
    assert changed != desc
    assert changed.arch_hash() != desc.arch_hash()


def test_arch_hash_ignores_the_reduction_cell_of_a_model_without_reductions():
    """Fails if the hash reads a cell kind the model does not use: two identical
    reduction-free models that differ only in their unused reduction cell would hash
    differently, and dedup, random_selection and random_search would miss the pair."""
    import hashlib

    a = _desc(cells=3, reductions=0)
    b = a.with_cells(a.normal, CellDesc(nodes=(NodeDesc(edges=(_edge(1, "max_pool_3x3"),)),
                                               NodeDesc(edges=(_edge(2, "skip_connect"),)))))
    assert a.reduce != b.reduce and a.arch_hash() == b.arch_hash()
    # With a reduction the same difference is another model.
    assert replace(a, reductions=1).arch_hash() != replace(b, reductions=1).arch_hash()
    # A model stored with its normal cell in the unused slot (seeds, grown children)
    # keeps the hash the old rule gave it, so a resumed run's recorded hashes still hold.
    stored = a.with_cells(a.normal, a.normal)
    data = stored.to_dict()
    data.pop("meta")
    old = hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":"))
                         .encode()).hexdigest()[:16]
    assert stored.arch_hash() == old == a.arch_hash()


def test_hash_ignores_key_order():
    desc = _desc()
    data = desc.to_dict()
    shuffled = dict(reversed(list(data.items())))
    assert ModelDesc.from_dict(shuffled).arch_hash() == desc.arch_hash()


def test_properties():
    desc = _desc()
    assert desc.nodes == 2
    assert desc.reduction_indices == [1, 3] == reduction_indices(5, 2)
    assert desc.cell_desc(1) is desc.reduce and desc.cell_desc(2) is desc.normal
    assert desc.cell_channels() == [8, 16, 16, 32, 32]
    assert desc.normal.n_states == 4


def test_load_refuses_python_tags(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "desc.yaml"
    data = _desc().to_dict()
    text = yaml.safe_dump(data, sort_keys=False).replace(
        "cells: 5", f'cells: !!python/object/apply:os.system ["touch {marker}"]', 1)
    assert "!!python" in text
    path.write_text(text)
    with pytest.raises(UntrustedFileError) as info:
        ModelDesc.load(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


def test_load_refuses_a_top_level_python_object(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "desc.yaml"
    path.write_text(f'!!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(UntrustedFileError):
        ModelDesc.load(path)
    assert not marker.exists()


def test_load_of_broken_or_foreign_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cells: [1\n")
    with pytest.raises(ValueError):
        ModelDesc.load(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n")
    with pytest.raises(ValueError):
        ModelDesc.load(listing)
    partial = tmp_path / "partial.yaml"
    partial.write_text("cells: 3\nreductions: 1\n")
    with pytest.raises(ValueError, match="invalid model description"):
        ModelDesc.load(partial)


def test_edge_reading_a_later_state_is_invalid():
    normal = CellDesc(nodes=(NodeDesc(edges=(_edge(2, "sep_conv_3x3"),)),))  # node 0 reads itself
    with pytest.raises(ValueError, match="not an earlier state"):
        _desc(normal=normal, reduce=normal)
    ahead = CellDesc(nodes=(NodeDesc(edges=(_edge(1, "sep_conv_3x3"),)),
                            NodeDesc(edges=(_edge(4, "sep_conv_3x3"),))))
    with pytest.raises(ValueError):
        _desc(normal=ahead, reduce=ahead)
    negative = CellDesc(nodes=(NodeDesc(edges=(_edge(-1, "sep_conv_3x3"),)),))
    with pytest.raises(ValueError):
        _desc(normal=negative, reduce=negative)


@pytest.mark.parametrize("cells, reductions", [(2, 1), (4, 2), (0, 0), (3, -1)])
def test_too_few_cells_for_the_reductions(cells, reductions):
    with pytest.raises(ValueError, match="cells"):
        _desc(cells=cells, reductions=reductions)


def test_cells_without_nodes_or_edges():
    empty = CellDesc(nodes=())
    with pytest.raises(ValueError, match="no nodes"):
        _desc(normal=empty, reduce=empty)
    edgeless = CellDesc(nodes=(NodeDesc(edges=()),))
    with pytest.raises(ValueError, match="no edges"):
        _desc(normal=edgeless, reduce=edgeless)


def test_normal_and_reduce_need_the_same_node_count():
    one = CellDesc(nodes=(NodeDesc(edges=(_edge(1, "sep_conv_3x3"),)),))
    with pytest.raises(ValueError):
        _desc(normal=one)


def test_candidate_reading_unknown_states():
    cell = replace(_desc().normal, candidate=CandidateDesc(inputs=(0, 4), ops=("none",)))
    with pytest.raises(ValueError, match="candidate"):
        _desc(normal=cell)
    no_ops = replace(_desc().normal, candidate=CandidateDesc(inputs=(0,), ops=()))
    with pytest.raises(ValueError):
        _desc(normal=no_ops)


def test_from_dict_of_invalid_structure_is_a_value_error():
    data = _desc().to_dict()
    data["normal"]["nodes"][0]["edges"][0]["input"] = 7
    with pytest.raises(ValueError):
        ModelDesc.from_dict(data)
