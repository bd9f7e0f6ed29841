"""Naming models by what they are (best_model), and errors that list what exists."""

import subprocess
import sys

import pytest

import petrinas
from petrinas.errors import InputError
from petrinas.model_desc.desc import no_such_model_folder
from petrinas.runs import best_model, model_folder
from support import REPO

GALLERY = [("t0000", 16690, 380, 0.85), ("t0001", 27250, 565, 0.95),
           ("t0016", 41010, 840, 0.97), ("t0028", 63730, 1275, 0.97)]


@pytest.fixture
def run(tmp_path):
    lines = ["trial_id\tmacs\tparams\tval_top1"]
    lines += [f"{t}\t{m}\t{p}\t{v}" for t, m, p, v in GALLERY]
    (tmp_path / "frontier_eps.tsv").write_text("\n".join(lines) + "\n")
    for trial, *_ in GALLERY:
        (tmp_path / "gallery" / trial).mkdir(parents=True)
        (tmp_path / "gallery" / trial / "desc.yaml").write_text("{}")
    return tmp_path


def test_best_model_is_the_lowest_validation_error_and_the_cheaper_of_a_tie(run):
    assert best_model(run) == run / "gallery" / "t0016"
    assert best_model(run, 30000) == run / "gallery" / "t0001"
    assert best_model(run, 600, cost="params") == run / "gallery" / "t0001"
    assert petrinas.best_model(run, 16690) == run / "gallery" / "t0000"


def test_an_eval_directory_gives_the_trial_folder_its_model_is_stored_in(tmp_path):
    (tmp_path / "frontier_eps.tsv").write_text(
        "trial_id\tparent_id\tstage\tmacs\tval_top1\n"
        "e0000\tt0001\teval\t100\t0.9\ne0001\tt0016\teval\t200\t0.95\n")
    assert best_model(tmp_path) == tmp_path / "trials" / "e0001"


def test_no_model_under_the_budget_names_the_cheapest(run):
    with pytest.raises(InputError, match="costs at most 1000 macs \\(the cheapest: 16690\\)"):
        best_model(run, 1000)


def test_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(InputError, match="frontier_eps.tsv: missing"):
        best_model(tmp_path)


def test_a_run_directory_stands_for_its_best_model_and_a_model_folder_for_itself(run):
    assert model_folder(run) == run / "gallery" / "t0016"
    assert model_folder(run / "gallery" / "t0000") == run / "gallery" / "t0000"


def test_a_missing_model_folder_lists_the_ones_that_exist(run):
    error = no_such_model_folder(run / "gallery" / "t9999")
    assert str(error).endswith("t9999: no such model folder; "
                               f"{run / 'gallery'} holds t0000, t0001, t0016, t0028")
    with pytest.raises(FileNotFoundError, match="holds t0000, t0001, t0016, t0028"):
        petrinas.load_model(run / "gallery" / "t9999")


def test_the_console_command_lists_commands_and_bundled_configs():
    out = subprocess.run([sys.executable, "-m", "petrinas", "--help"], capture_output=True,
                         text=True, cwd=REPO, check=True).stdout
    for name in ("search", "eval", "export", "draw", "compare", "petridish_digits",
                 "benchmark_digits"):
        assert f"\n  {name}" in out
    sub = subprocess.run([sys.executable, "-m", "petrinas", "search", "--help"],
                         capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert sub.startswith("usage: petrinas search")
    bad = subprocess.run([sys.executable, "-m", "petrinas", "serch"], capture_output=True,
                         text=True, cwd=REPO)
    assert bad.returncode == 2 and bad.stderr.startswith("error: unknown command 'serch'")


def test_help_shows_the_public_api():
    import pydoc
    text = pydoc.render_doc(petrinas, renderer=pydoc.plaintext)
    import importlib
    importlib.import_module("petrinas.compare")  # a submodule must not hide a function
    for name in ("load_config", "load_model", "load_dataset", "best_model"):
        assert f"{name}(" in text
