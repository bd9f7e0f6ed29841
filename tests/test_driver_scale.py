"""benchmarks/driver_scale.py's disk: its stand-in models weigh what the networks their
descriptions build weigh (a child one node more than its parent, not a multiple of it),
and the folders a killed run left behind are removed by the next run, and only those."""

import os
import random
import subprocess
import sys

import pytest

from petrinas.model_desc import build_model
from petrinas.model_desc.desc import ModelDesc
from petrinas.search.kinds import KINDS
from support import REPO, load_script


@pytest.fixture(scope="module")
def bench():
    return load_script(REPO / "benchmarks" / "driver_scale.py")


def state_dict_values(desc: dict) -> int:
    model = build_model(ModelDesc.from_dict(desc))
    return sum(value.numel() for value in model.state_dict().values())


def test_stand_in_weights_are_the_size_of_the_model_the_description_builds(bench, one_thread):
    """Fails if a stand-in's weights are sized any other way (MACs / 50, as before: a
    lineage's weights then grew 1.05-1.5x a generation) or its node count is misread."""
    rng = random.Random(0)
    seed, _, _ = bench.synthetic({"macro": [8, 2, 3]}, KINDS.get("seed"), rng)
    lineage = [seed]
    for _ in range(3):
        child, _, _ = bench.synthetic({"parent": lineage[-1]}, KINDS.get("search"), rng)
        lineage.append(child)
    sizes = []
    for desc in lineage:
        output = bench.output_of(desc, 1e7, 0.1, 0.0, 1.0)
        assert len(output.weights) == 4 * state_dict_values(desc)
        assert output.row["params"] == state_dict_values(desc)
        sizes.append(len(output.weights))
    # One node more a generation: the same number of bytes more each time.
    steps = {b - a for a, b in zip(sizes, sizes[1:])}
    assert len(steps) == 1 and steps.pop() > 0
    other, _, _ = bench.synthetic({"macro": [3, 1, 1]}, KINDS.get("seed"), rng)
    assert len(bench.output_of(other, 1e7, 0.1, 0.0, 1.0).weights) == \
        4 * state_dict_values(other)


def test_a_killed_runs_folder_is_removed_and_a_running_ones_is_not(bench, tmp_path):
    """Fails if leftovers are not removed, or the folder of a run still going (this
    process) or a folder of another name is."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()                                   # its pid names no process now
    dead = tmp_path / f"driver_scale.{gone.pid}.abc"
    alive = tmp_path / f"driver_scale.{os.getpid()}.def"
    other = tmp_path / "driver_scale.notapid.ghi"
    for folder in (dead, alive, other):
        (folder / "cost" / "trials").mkdir(parents=True)
        (folder / "cost" / "trials" / "weights.pt").write_bytes(b"x" * 10)
    assert bench.remove_leftovers(tmp_path) == [dead]
    assert not dead.exists() and alive.is_dir() and other.is_dir()


def test_disk_bytes_counts_what_the_files_occupy(bench, tmp_path):
    """Fails if the disk a run used is read from the files' sizes rather than their
    blocks (a sparse file occupies almost nothing) or misses nested folders."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "full").write_bytes(b"\1" * 2 ** 20)
    with open(tmp_path / "a" / "sparse", "wb") as f:
        f.truncate(2 ** 30)                       # 1 GiB long, no block written
    used = bench.disk_bytes(tmp_path)
    assert 2 ** 20 <= used < 2 ** 20 + 2 ** 18
