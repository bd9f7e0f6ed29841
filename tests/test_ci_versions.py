"""`.ci/versions.py`: the line CI prints of the versions it tested, and the README check."""

import subprocess
import sys

from support import REPO, load_script


def _versions():
    return load_script(REPO / ".ci" / "versions.py")


def test_the_line_names_the_installed_versions():
    import numpy
    import torch

    line = _versions().tested_line()
    assert line.startswith(f"Tested with: Python {sys.version.split()[0]}, ")
    assert f"torch {torch.__version__.split('+')[0]}" in line or \
        f"torch {torch.__version__}" in line
    assert f"numpy {numpy.__version__}," in line


def test_a_changed_version_is_reported_and_the_rest_is_not():
    versions = _versions()
    old = "Tested with: Python 3.11.7, torch 2.14.1, numpy 2.4.6."
    assert versions.differences(old, old) == []
    assert versions.differences(old, "Tested with: Python 3.11.7, torch 2.15.0, numpy 2.4.6.") \
        == ["torch 2.14.1 in the README, 2.15.0 here"]


def test_write_then_check_agrees(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\nTested with: Python 0.0, torch 0.0.\nrest\n")
    script = str(REPO / ".ci" / "versions.py")
    subprocess.run([sys.executable, script, "--write", str(readme)], check=True,
                   capture_output=True)
    text = readme.read_text()
    assert text.startswith("intro\nTested with: Python ") and text.endswith(".\nrest\n")
    checked = subprocess.run([sys.executable, script, "--check", str(readme)], check=True,
                             capture_output=True, text=True).stdout
    assert checked.splitlines()[-1] == f"versions: {readme} is up to date"
