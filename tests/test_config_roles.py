"""Key roles: each config key declares, where it is defined, the lists of keys other
modules need (what a resume may change, what compare ignores, what the program derives);
the lists are derived from those declarations and must agree with each other."""

import dataclasses
from pathlib import Path

import pytest
import yaml

from petrinas import compare, evaluate
from petrinas.config import Role, keys_with, schema_fields, spec
from petrinas.config_loader import load_config
from petrinas.engine import store
from petrinas.engine.store import RunStore

DOCS = Path(__file__).resolve().parent.parent / "docs"


def covered(key: str, keys) -> bool:
    """Whether `keys` (keys and section prefixes) name `key` (as the consumers match)."""
    return any(key == k or key.startswith(f"{k}.") for k in keys)


def flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# The hand-kept lists these replaced, as they were: the derivation changes no behaviour.
# The consumers only test membership and prefixes, so order does not matter.
@pytest.mark.parametrize("derived, by_hand", [
    # + search.max_trials, search.max_compute_hours: runs of one strategy on other
    # budgets made groups of their own, every label repeating its budget, though compare
    # reads every run at equal compute
    (compare.IGNORED, ("seed", "name", "resources", "search.plot_interval_s",
                       "search.max_hours", "search.max_trials", "search.max_compute_hours",
                       "eval")),
    (store.RESUMABLE_KEYS, ("search.max_trials", "search.max_hours",
                            "search.max_compute_hours", "search.plot_interval_s",
                            "resources", "eval")),
    (store.DERIVED_KEYS, ("search.hv_ref_cost", "search.hv_ref_error",
                          "search.hv_cost_floor")),
    # + search.max_compute_hours: an eval refused to resume after its search was
    # extended by that budget (found by deriving these lists; the one behaviour change)
    (evaluate.EVAL_RESUMABLE_KEYS, ("eval.max_models", "resources", "search.max_trials",
                                    "search.max_hours", "search.max_compute_hours",
                                    "search.plot_interval_s")),
], ids=["compare_ignored", "resumable", "derived", "eval_resumable"])
def test_each_derived_list_is_the_hand_kept_one_it_replaced(derived, by_hand):
    assert isinstance(derived, tuple)
    assert sorted(derived) == sorted(by_hand)


def test_every_key_declares_its_roles_as_role_members():
    """Every key (sections too) is declared through spec(), so its roles are a frozenset
    of Role members; spec() refuses anything else at import time."""
    keys = list(schema_fields())
    assert len(keys) > 50
    for key, f, _ in keys:
        roles = f.metadata.get("roles")
        assert isinstance(roles, frozenset), key
        assert all(isinstance(role, Role) for role in roles), key
    with pytest.raises(TypeError, match="roles must be Role members"):
        spec(0, roles=("resumable",))


def test_a_role_a_section_declares_is_not_declared_again_inside_it():
    """A section's role holds for all its keys (the list names the section as a
    prefix), so the same role declared on a key inside it would say nothing."""
    declared = {(key, role) for key, f, _ in schema_fields() for role in f.metadata["roles"]}
    for key, role in declared:
        parts = key.split(".")
        sections = {".".join(parts[:i]) for i in range(1, len(parts))}
        assert not {(s, role) for s in sections} & declared, (key, role)


def test_a_section_role_is_listed_once_as_a_prefix_of_its_keys():
    """`resources` declares its roles for the whole section: the lists name the section,
    which also covers a key an older version wrote there, never its keys one by one."""
    for role in (Role.RESUMABLE, Role.EVAL_RESUMABLE, Role.COMPARE_IGNORED):
        listed = keys_with(role)
        assert "resources" in listed
        assert not [k for k in listed if k.startswith("resources.")]
        assert covered("resources.memory_per_job_mb", listed)
        assert covered("resources.a_key_of_an_older_version", listed)


def test_the_derived_keys_are_what_the_runner_fills_in_and_config_yaml_records(tmp_path):
    """A derived key is 0 (derive) by default; the runner fills in exactly the declared
    derived keys, and the run's config.yaml records the values it filled in."""
    from petrinas.engine.runner import with_reference_point

    config = load_config("petridish_digits")
    derived = keys_with(Role.DERIVED)
    given, filled = flat(config.to_dict()), flat(with_reference_point(config).to_dict())
    assert {k for k in given if given[k] != filled[k]} == set(derived)
    assert all(given[k] == 0.0 for k in derived)
    RunStore.open(tmp_path / "run", with_reference_point(config)).close()
    written = flat(yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()))
    assert {k: written[k] for k in derived} == {k: filled[k] for k in derived}
    assert all(written[k] > 0 for k in derived)


def test_a_derived_key_has_no_other_role():
    """A derived key is part of what a run measures (its hypervolume box): a resume may
    not change it, and compare refuses runs that differ in it rather than ignoring it."""
    for key in keys_with(Role.DERIVED):
        for role in set(Role) - {Role.DERIVED}:
            assert not covered(key, keys_with(role)), (key, role)


def test_what_a_resumed_search_may_change_a_resumed_eval_accepts():
    """The eval stage reads the search's config.yaml, which a resumed search rewrites:
    a search key the search may change must not make the next eval refuse to resume.
    The eval's own keys (`eval.*`) are the eval's business."""
    search_side = [k for k in keys_with(Role.RESUMABLE) if not covered(k, ("eval",))]
    missing = {k for k in search_side if not covered(k, keys_with(Role.EVAL_RESUMABLE))}
    assert missing == set()


def test_the_docs_name_what_a_resume_may_change_and_what_is_derived():
    """docs/reliability.md's Resuming section names every key a resumed search may change
    (a section as `section.*`), and docs/configuration.md's key table says each derived
    key is written to config.yaml. Fails if a key becomes resumable or derived without
    the docs saying so."""
    resuming = (DOCS / "reliability.md").read_text().split("\n## Resuming\n", 1)[1] \
        .split("\n#", 1)[0]
    for key, _, hint in schema_fields():
        if key in keys_with(Role.RESUMABLE):
            shown = f"`{key}.*`" if dataclasses.is_dataclass(hint) else f"`{key}`"
            assert shown in resuming, key
    table = (DOCS / "configuration.md").read_text()
    rows = [line.split(" | ", 1) for line in table.splitlines() if line.startswith("| `")]
    for key in keys_with(Role.DERIVED):
        meaning = next(m for first, m in rows if f"`{key}`" in first)
        assert "config.yaml" in meaning, key

