"""Every class of bad input: exit 2, one clear line naming the culprit, no traceback,
and no run directory left behind."""

import subprocess
import sys
from pathlib import Path

import pytest

from petrinas.cli import eval_main, search_main

REPO = Path(__file__).resolve().parent.parent


def _bad_yaml(tmp: Path) -> str:
    path = tmp / "broken.yaml"
    path.write_text("seed: 0\nsearch:\n  max_trials: [1, 2\n  max_hours: 3\n")
    return str(path)


def _python_tag(tmp: Path) -> str:
    path = tmp / "evil.yaml"
    marker = tmp / "pwned"
    path.write_text(f'seed: !!python/object/apply:os.system ["touch {marker}"]\n')
    return str(path)


def _missing_extends(tmp: Path) -> str:
    path = tmp / "child.yaml"
    path.write_text("extends: no_such_base.yaml\n")
    return str(path)


def _typo_in(tmp: Path) -> str:
    """A --conf file with a misspelled key, extending a bundled config."""
    path = tmp / "typo.yaml"
    path.write_text("extends: petridish_digits.yaml\nsearch:\n  max_trails: 5\n")
    return str(path)


def _typo_in_extended(tmp: Path) -> str:
    """A --conf file whose misspelled key sits in the file it extends."""
    _typo_in(tmp)
    path = tmp / "child.yaml"
    path.write_text("extends: typo.yaml\nsearch:\n  max_hours: 1\n")
    return str(path)


# (case id, search.py arguments (a callable gets tmp_path), words the message must hold)
CASES = [
    ("unknown top-level key", ["--set", "sead=1"], ["unknown config key sead",
                                                    "did you mean seed"]),
    ("unknown nested key", ["--set", "search.seed_train.epoch=3"],
     ["search.seed_train.epoch", "did you mean search.seed_train.epochs"]),
    ("wrong type", ["--set", "search.max_trials=abc"], ["search.max_trials",
                                                        "expected an integer"]),
    ("wrong type of a section", ["--set", "dataset=5"], ["dataset", "expected a mapping"]),
    ("out of range", ["--set", "dataset.val_fraction=1.5"], ["dataset.val_fraction",
                                                             "out of range"]),
    ("negative eps", ["--set", "search.convex_hull_eps=-0.1"], ["search.convex_hull_eps"]),
    ("zero trial budget", ["--set", "search.max_trials=0"], ["search.max_trials"]),
    ("zero time budget", ["--set", "search.max_hours=0"], ["search.max_hours"]),
    ("bad choice", ["--set", "dataset.name=mnist"], ["dataset.name", "digits"]),
    ("unknown op", ["--set", "model.candidate_ops=[sep_conv_3x3, sep_conv_7x7]"],
     ["model.candidate_ops[1]", "sep_conv_7x7"]),
    ("no valid seed", ["--set", "search.seeds.cells=[1, 2]", "search.seeds.reductions=[1, 1]"],
     ["search.seeds", "no (cells, reductions, nodes)"]),
    ("reversed range", ["--set", "search.seeds.nodes=[3, 1]"], ["search.seeds.nodes"]),
    ("missing config file", ["--conf", "no_such_conf.yaml"], ["no_such_conf.yaml"]),
    # Fails if a misspelled bundled name gets no suggestion (difflib over confs/).
    ("misspelled config name", ["--conf", "petridish_digit"],
     ["config file not found: petridish_digit (did you mean petridish_digits?)"]),
    ("misspelled config file name", ["--conf", "confs/petridsh.yaml"],
     ["config file not found: confs/petridsh.yaml (did you mean petridish?)"]),
    ("unknown config name", ["--conf", "resnet"], ["config file not found: resnet (bundled: "
                                                   "benchmark_digits, "]),
    ("missing extended file", lambda t: ["--conf", _missing_extends(t)],
     ["no_such_base.yaml"]),
    # Fails if a key's error does not name the --conf file (or the extended file) it
    # sits in: the key alone sends a user through a chain of files to find it.
    ("misspelled key in a --conf file", lambda t: ["--conf", _typo_in(t)],
     ["typo.yaml: unknown config key search.max_trails (did you mean search.max_trials?)"]),
    ("misspelled key in an extended file", lambda t: ["--conf", _typo_in_extended(t)],
     ["typo.yaml (extended by ", "child.yaml): unknown config key search.max_trails"]),
    ("a --set key is not blamed on the --conf file",
     lambda t: ["--conf", _typo_in_extended(t), "--set", "search.max_trails=6"],
     ["error: unknown config key search.max_trails (did you mean"]),
    ("YAML syntax error", lambda t: ["--conf", _bad_yaml(t)], ["broken.yaml", "line"]),
    ("Python tag in config", lambda t: ["--conf", _python_tag(t)], ["evil.yaml"]),
    ("missing dataset folder", ["--set", "dataset.name=cifar10", "dataset.root=/nonexistent/c10"],
     ["dataset.root", "/nonexistent/c10"]),
    ("missing npz file", ["--set", "dataset.name=npz", "dataset.root=/nonexistent/d.npz"],
     ["dataset.root", "d.npz"]),
    ("dataset without root", ["--set", "dataset.name=imagefolder"], ["dataset.root"]),
    ("override without =", ["--set", "search.max_trials"], ["search.max_trials",
                                                           "key.sub=value"]),
    ("unknown flag", ["--bogus"], ["--bogus"]),
    ("more GPUs per job than the cluster has", ["--set", "resources.gpus_per_job=64"],
     ["resources.gpus_per_job=64", "cannot run even one job"]),
    ("more memory per job than the cluster has",
     ["--set", "resources.memory_per_job_mb=100000000"], ["resources.memory_per_job_mb"]),
]


# Refused only once the Ray cluster is asked what it has: they use the suite's shared
# instance (2 CPUs, no GPU), as a search started from a notebook would use one up.
ON_RAY = {"more GPUs per job than the cluster has", "more memory per job than the cluster has"}


@pytest.mark.parametrize("case,args,words", CASES, ids=[c[0] for c in CASES])
def test_bad_search_input(case, args, words, tmp_path, capsys, request):
    if case in ON_RAY:
        request.getfixturevalue("shared_ray")
    out = tmp_path / "run"
    argv = args(tmp_path) if callable(args) else args
    code = search_main(["--out", str(out), "--quiet", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    for word in words:
        assert word in err
    assert not out.exists(), "nothing may be left behind"
    assert not (tmp_path / "pwned").exists()


def test_bad_eval_input(tmp_path, capsys):
    assert eval_main(["--run", str(tmp_path / "nothing")]) == 2
    assert eval_main([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error: ") for line in err)


def test_the_script_itself_exits_2_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "search.py"), "--out", str(tmp_path / "r"),
         "--set", "search.max_trails=5"], capture_output=True, text=True,
        timeout=600)  # only a guard against a hang
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: unknown config key search.max_trails "
                                     "(did you mean search.max_trials?)")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", ["search", "eval", "export", "draw", "compare"])
def test_an_unknown_option_names_the_command_and_only_itself(command, monkeypatch, capsys):
    """The bad option's value must not take the run folder's place (argparse's own error
    was `unrecognized arguments: --set RUN`, naming the folder and not the command)."""
    from petrinas.cli import main

    monkeypatch.setattr(sys, "argv", ["petrinas"])   # as the console command runs
    assert main([command, "--bogus", "eval.init_channels=8", "RUN"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: petrinas {command}: unknown option --bogus (its options: ")
    assert err.count("\n") == 1 and "RUN" not in err and "init_channels" not in err


def test_export_refuses_set_in_one_line_naming_it(tmp_path):
    """`--set` changes a config, and an exported model is fixed by its trained weights."""
    result = subprocess.run([sys.executable, "-m", "petrinas", "export", "--set",
                             "eval.init_channels=8", str(tmp_path)], capture_output=True,
                            text=True, timeout=600, cwd=REPO)  # a hang guard only
    assert result.returncode == 2
    assert result.stderr == ("error: petrinas export: unknown option --set (its options: "
                             "--out; see --help)\n")


def closed_port() -> int:
    """A port with nothing listening: bound, then closed."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_address_with_nothing_listening_exits_2_before_writing_anything(tmp_path):
    """Fails if --address is not tried before the run folder is written (config.yaml,
    pool.tsv, journal were there), or if the command waits on ray.init, which retries an
    address with nothing behind it for as long as it runs (the timeout below only keeps
    a hang from holding up the suite: a refused port is answered at once)."""
    address = f"127.0.0.1:{closed_port()}"
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "search.py"), "--out", str(out), "--quiet",
         "--address", address], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr == (
        f"error: --address {address}: cannot reach the Ray cluster (connection refused); "
        f"check that its head node is up (`ray status` there) and that {address} is the "
        "address `ray start --head` printed, reachable from here\n")
    assert not out.exists()


# The tests below are marked own_ray, no Ray instance up in this process: the address is
# checked only where a stage would join a cluster, and a Ray already up (the suite's
# shared instance) is used as it is, so with one up these tests would check nothing.
@pytest.mark.own_ray
def test_an_address_with_nothing_listening_leaves_an_existing_folder_untouched(
        tmp_path, capsys):
    """An --out folder that exists already (made by the user, or a run to resume) is not
    removed on a refusal, so nothing may be written into it first. Fails if the address
    is tried only where Ray is started (config.yaml, the journal and logs/ were there)."""
    out = tmp_path / "mine"
    out.mkdir()
    address = f"127.0.0.1:{closed_port()}"
    assert search_main(["--out", str(out), "--quiet", "--address", address]) == 2
    assert capsys.readouterr().err.startswith(f"error: --address {address}: cannot reach")
    assert list(out.iterdir()) == []


@pytest.mark.own_ray
def test_an_address_that_never_answers_is_given_up_after_the_connect_timeout():
    """A host that drops the connection (a firewall, a listener whose backlog is full)
    is given up after the product's own connect timeout, not Ray's endless retries.
    Fails if the probe has no timeout (it would wait for the kernel's, minutes) or if
    the default is above 30 s (a wrong address must be named within half a minute)."""
    import socket

    from petrinas.engine.jobs import CONNECT_TIMEOUT_S, RayOptions
    from petrinas.errors import InputError

    assert CONNECT_TIMEOUT_S <= 30
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)                 # a queue of one, never accepted:
        address = "127.0.0.1:%d" % server.getsockname()[1]
        with socket.create_connection(server.getsockname()):  # fills it
            with pytest.raises(InputError, match=rf"^--address {address}: cannot reach "
                                                 r"the Ray cluster \(no answer within "
                                                 r"0\.5 s\); check that"):
                RayOptions(address).check_reachable(timeout_s=0.5)


@pytest.mark.own_ray
def test_a_malformed_address_is_named(monkeypatch):
    """Fails if a port that is not a number reaches ray.init (or the socket call)."""
    from petrinas.engine.jobs import RayOptions
    from petrinas.errors import InputError

    monkeypatch.setenv("RAY_ADDRESS", "headnode:63x79")
    with pytest.raises(InputError, match=r"^RAY_ADDRESS=headnode:63x79: expected HOST:PORT"):
        RayOptions().check_reachable()
