"""Who can reach a search's Ray instance.

The local instance that a search starts for itself uses Ray's token authentication, turned
on explicitly (jobs.py), so a client on another machine without the token is refused,
on every Ray version setup.cfg allows, while its owner (the same user, holding the token
in ~/.ray/auth_token) can still join. Both with a token file there before the search and
without one (Ray then creates it). A cluster of the user's own with token authentication
is joined through --address with the token in the environment.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from support import REPO, TINY, interruptible, read_tsv, wait_for

SEARCH = [*interruptible(REPO / "scripts" / "search.py"), "--quiet", "--set", *TINY]
# A client that joins ADDRESS and prints how many CPUs the cluster has; a failure to
# connect is its exit code.
CLIENT = ("import sys, ray; ray.init(address=sys.argv[1], log_to_driver=False); "
          "print('joined', ray.cluster_resources().get('CPU'))")
GCS_LINE = re.compile(r"Ray \S+ at (\S+):(\d+) \(local instance")
# A refused client is refused on its first try, then Ray tries again 20 times a second
# apart (its wait for a GCS that may still be starting): a stranger here gives up after
# 2 tries. The refusal it reports is the same.
REFUSED_FAST = {"RAY_NUM_REDIS_GET_RETRIES": "2"}


def machine_address() -> str:
    """This machine's non-loopback address (the one another machine would use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        address = s.getsockname()[0]
    if address.startswith("127."):
        pytest.skip("this machine has no non-loopback address")
    return address


def env_with(home: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
    env.update(HOME=str(home), MPLCONFIGDIR=str(home / ".mpl"), **extra)
    return env


def connect(address: str, env: dict) -> subprocess.Popen:
    """A client joining `address`, started now; `finish` waits for it. Clients run side
    by side where they can."""
    return subprocess.Popen([sys.executable, "-c", CLIENT, address], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = process.communicate(timeout=600)   # only a guard against a hang
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def wait_for_gcs_port(run_dir: Path, search: subprocess.Popen) -> int:
    """The port of the search's Ray instance, once its log names it (an event)."""
    log = run_dir / "logs" / "search.log"
    found = []

    def named() -> bool:
        assert search.poll() is None, "the search ended before its Ray instance was seen"
        found[:] = GCS_LINE.findall(log.read_text()) if log.exists() else []
        return bool(found)
    wait_for(named, f"a Ray address in {log}", poll_s=0.5)
    return int(found[0][1])


def start_search(home: Path, run_dir: Path) -> subprocess.Popen:
    """A search long enough to outlive the checks; it is interrupted at the end. One job
    at a time: the two searches' training would only slow the clients' joining."""
    return subprocess.Popen([*SEARCH, "--out", str(run_dir), "--set", "search.max_trials=400",
                             "search.max_hours=0.1", "resources.max_concurrent=1"],
                            env=env_with(home),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_local_searches_refuse_strangers_and_let_their_owners_join(tmp_path):
    """Two searches side by side: one whose owner has no ~/.ray/auth_token yet, one
    whose owner has. Fails if a client without the search's token joins it, or its
    owner cannot, or Ray's token file is not created where missing or is replaced."""
    homes = {name: tmp_path / name for name in ("fresh", "tokened", "stranger")}
    for home in homes.values():
        home.mkdir()
    token_file = {name: homes[name] / ".ray" / "auth_token" for name in ("fresh", "tokened")}
    token_file["tokened"].parent.mkdir()
    token_file["tokened"].write_text("f" * 32)
    searches = {name: start_search(homes[name], tmp_path / f"run-{name}")
                for name in ("fresh", "tokened")}
    try:
        ip = machine_address()
        address = {name: f"{ip}:{wait_for_gcs_port(tmp_path / f'run-{name}', search)}"
                   for name, search in searches.items()}
        strangers = {  # no token at all; a wrong token
            "fresh": connect(address["fresh"], env_with(homes["stranger"], **REFUSED_FAST)),
            "tokened": connect(address["tokened"], env_with(
                homes["stranger"], RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 32,
                **REFUSED_FAST))}
        # An owner asks for token mode; the token is Ray's default, ~/.ray/auth_token.
        owners = {name: connect(address[name], env_with(homes[name], RAY_AUTH_MODE="token"))
                  for name in searches}
        for name in searches:
            owner = finish(owners[name])
            assert owner.returncode == 0, owner.stderr[-1500:]
            assert owner.stdout.strip() == f"joined {float(os.cpu_count())}"
            stranger = finish(strangers[name])
            assert stranger.returncode != 0 and "joined" not in stranger.stdout
            assert "InvalidAuthToken" in stranger.stderr, stranger.stderr[-1500:]
    finally:
        for search in searches.values():
            search.send_signal(signal.SIGINT)
    for search in searches.values():
        _, err = search.communicate(timeout=600)   # only a guard against a hang
        assert search.returncode == 130, err
        assert err.strip() == "interrupted: run the same command to resume"
    # Ray's own token: created where it was missing, used as it was where present.
    assert len(token_file["fresh"].read_text()) >= 32
    assert token_file["tokened"].read_text() == "f" * 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def token_cluster(tmp_path):
    """A one-node Ray cluster of the user's own, started with token authentication."""
    home = tmp_path / "admin"
    home.mkdir()
    port = free_port()
    env = env_with(home, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="c" * 32)
    # A temp dir of its own (short: Ray's socket paths must fit 107 characters), so its
    # address file does not outlive it in /tmp/ray for the tests that follow.
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    head = subprocess.Popen(["ray", "start", "--head", "--block", f"--port={port}",
                             f"--temp-dir={temp_dir}", "--num-cpus=2",
                             "--include-dashboard=false"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"

    def joined() -> bool:   # the event: a client of the admin's joins
        assert head.poll() is None, "ray start failed"
        return finish(connect(address, env)).returncode == 0
    wait_for(joined, "the cluster accepting its admin", poll_s=1.0)
    yield address
    head.send_signal(signal.SIGTERM)  # --block: stops the cluster's processes too
    head.wait(timeout=600)            # only a guard against a hang
    shutil.rmtree(temp_dir, ignore_errors=True)


def test_address_joins_a_cluster_with_token_authentication(tmp_path, token_cluster):
    home = tmp_path / "user"
    home.mkdir()
    run_dir = tmp_path / "run"
    args = [*SEARCH, "--address", token_cluster, "--set", "search.max_trials=3"]
    without = subprocess.Popen([*args, "--out", str(tmp_path / "refused")],
                               env=env_with(home, **REFUSED_FAST), stderr=subprocess.PIPE,
                               text=True)
    with_token = subprocess.run([*args, "--out", str(run_dir)],
                                env=env_with(home, RAY_AUTH_MODE="token",
                                             RAY_AUTH_TOKEN="c" * 32),
                                capture_output=True, text=True,
                                timeout=600)   # only a guard against a hang
    assert with_token.returncode == 0, with_token.stderr[-2000:]
    assert with_token.stderr == ""
    rows = read_tsv(run_dir / "pool.tsv")
    assert len(rows) == 3 and all(r["status"] in ("ok", "duplicate") for r in rows)
    assert f"joined {token_cluster}" in (run_dir / "logs" / "search.log").read_text()
    _, err = without.communicate(timeout=600)   # only a guard against a hang
    assert without.returncode == 2
    assert err.startswith(f"error: --address {token_cluster}: cannot join")
    assert "RAY_AUTH_TOKEN" in err and err.count("\n") == 1
    assert not (tmp_path / "refused").exists()
