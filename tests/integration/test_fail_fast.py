"""Misconfigured nodes and coordinators stop within seconds with one line naming what to fix;
a node registers again when the coordinator came back without its record."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coordinator.store import Store
from crypto.pki import init_pki
from fedcredit.cli.exit_codes import ExitCode
from fedcredit.launcher import LocalNetwork, free_port, write_toml
from tests.integration.conftest import Tables

HEARTBEAT_S = 1.0
FAIL_FAST_S = 20.0  # generous for 2 busy cores; the measured figures are printed on failure


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory, tables: Tables) -> Iterator[LocalNetwork]:
    """A coordinator with the bank and the core node, whose heartbeat is short."""
    os.environ["FEDCREDIT_NODE_HEARTBEAT_SECONDS"] = str(HEARTBEAT_S)
    network = LocalNetwork(tmp_path_factory.mktemp("net"),
                           [s for s in tables.specs if s.name in ("bank", "core")])
    try:
        with network:
            network.start(timeout=120)
            yield network
    finally:
        del os.environ["FEDCREDIT_NODE_HEARTBEAT_SECONDS"]


def _config(net: LocalNetwork, name: str) -> dict[str, Any]:
    return tomllib.loads(net.config_path(name).read_text())


def _run(net: LocalNetwork, tmp_path: Path, group: str, config: dict[str, Any],
         ) -> tuple[int, float, str]:
    """Run `fedcredit <group> serve` with ``config`` to its exit: code, seconds, output."""
    path = tmp_path / "bad.toml"
    config["state_dir"] = str(tmp_path / "state")
    write_toml(config, path)
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "fedcredit.cli.main", group, "serve",
                           "--config", str(path)], capture_output=True, text=True,
                          timeout=120, check=False)
    return done.returncode, time.monotonic() - start, done.stdout + done.stderr


def _error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, output
    assert "Traceback" not in output, output
    return lines[0]


def test_a_second_node_on_a_used_port_exits_naming_the_port(net: LocalNetwork,
                                                            tmp_path: Path) -> None:
    config = _config(net, "bank")

    code, seconds, output = _run(net, tmp_path, "node", config)

    line = _error_line(output)
    assert code == ExitCode.CANNOT_LISTEN, output
    assert f"node bank: cannot listen on {config['listen']} (listen in " in line
    assert "bad.toml): address already in use" in line
    assert seconds < FAIL_FAST_S, f"took {seconds:.1f}s"
    net.check_alive()  # the first bank still runs


def test_a_second_coordinator_on_a_used_port_exits_naming_the_port(net: LocalNetwork,
                                                                   tmp_path: Path) -> None:
    code, seconds, output = _run(net, tmp_path, "coordinator", _config(net, "coordinator"))

    line = _error_line(output)
    assert code == ExitCode.CANNOT_LISTEN, output
    assert f"coordinator: cannot listen on {net.coordinator_address} (listen in " in line
    assert seconds < FAIL_FAST_S, f"took {seconds:.1f}s"


def test_a_node_whose_key_is_of_another_certificate_names_both_files(
        net: LocalNetwork, tmp_path: Path) -> None:
    config = _config(net, "bank")
    config["listen"] = "127.0.0.1:0"
    config["tls"]["key"] = str(net.pki_dir.resolve() / "core.key")

    code, seconds, output = _run(net, tmp_path, "node", config)

    line = _error_line(output)
    assert code == ExitCode.TRUST, output
    assert (f"[tls] cert = {config['tls']['cert']} and [tls] key = {config['tls']['key']} "
            "are not a pair") in line
    assert seconds < FAIL_FAST_S, f"took {seconds:.1f}s"


def test_a_coordinator_address_that_does_not_resolve_fails_within_seconds(
        net: LocalNetwork, tmp_path: Path) -> None:
    config = _config(net, "bank")
    config.update(listen="127.0.0.1:0", coordinator="no-such-coordinator.invalid:50050")

    code, seconds, output = _run(net, tmp_path, "node", config)

    line = _error_line(output)
    assert code == ExitCode.UNAVAILABLE, output
    assert 'coordinator = "no-such-coordinator.invalid:50050"' in line
    assert "does not resolve" in line
    assert seconds < FAIL_FAST_S, f"took {seconds:.1f}s"


def test_a_node_with_another_networks_certificates_names_its_ca(net: LocalNetwork,
                                                               tmp_path: Path) -> None:
    rogue = tmp_path / "rogue-pki"
    init_pki(rogue, ["bank"])
    config = _config(net, "bank")
    config["listen"] = "127.0.0.1:0"
    config["tls"] = {"ca": str(rogue / "ca.crt"), "cert": str(rogue / "bank.crt"),
                     "key": str(rogue / "bank.key")}

    code, seconds, output = _run(net, tmp_path, "node", config)

    line = _error_line(output)
    assert code == ExitCode.TRUST, output
    assert f'coordinator = "{net.coordinator_address}"' in line
    assert f"not signed by the CA in [tls] ca = {rogue / 'ca.crt'}" in line
    assert seconds < FAIL_FAST_S, f"took {seconds:.1f}s"


def test_a_coordinator_address_of_another_party_is_a_name_mismatch(net: LocalNetwork,
                                                                   tmp_path: Path) -> None:
    config = _config(net, "bank")
    config.update(listen="127.0.0.1:0", coordinator=_config(net, "core")["listen"])

    code, seconds, output = _run(net, tmp_path, "node", config)

    line = _error_line(output)
    assert code == ExitCode.TRUST, output
    assert f'coordinator = "{config["coordinator"]}"' in line
    assert "its certificate names core" in line
    assert seconds < FAIL_FAST_S, f"took {seconds:.1f}s"


def test_a_node_waiting_for_its_coordinator_logs_every_attempt(net: LocalNetwork,
                                                              tmp_path: Path) -> None:
    config = _config(net, "bank")
    config.update(listen="127.0.0.1:0", coordinator=f"127.0.0.1:{free_port()}",
                  state_dir=str(tmp_path / "state"))
    write_toml(config, tmp_path / "waiting.toml")
    log = tmp_path / "waiting.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "fedcredit.cli.main", "node", "serve",
                                 "--config", str(tmp_path / "waiting.toml")],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        expected = f"waiting for coordinator {config['coordinator']} (3/60): connection refused"
        deadline = time.monotonic() + 60
        while expected not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        assert expected in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_certificate_not_issued_by_the_configured_ca_is_refused_before_listening(
        net: LocalNetwork, tmp_path: Path) -> None:
    rogue = tmp_path / "rogue-pki"
    init_pki(rogue, ["bank"])
    config = _config(net, "bank")
    config["tls"].update(cert=str(rogue / "bank.crt"), key=str(rogue / "bank.key"))

    code, _, output = _run(net, tmp_path, "node", config)

    assert code == ExitCode.TRUST, output
    assert f"is not issued by the CA in [tls] ca = {config['tls']['ca']}" in _error_line(output)


def test_operator_commands_without_a_pki_folder_say_so_in_one_line(net: LocalNetwork) -> None:
    done = subprocess.run([sys.executable, "-m", "fedcredit.cli.main", "nodes", "--pki",
                           "/nonexistent", "--coordinator", net.coordinator_address],
                          capture_output=True, text=True, timeout=60, check=False)

    line = _error_line(done.stdout + done.stderr)
    assert done.returncode == ExitCode.TRUST
    assert "PKI folder /nonexistent not found (--pki or FEDCREDIT_PKI)" in line


def test_nodes_register_again_with_a_coordinator_restarted_on_a_fresh_state_dir(
        net: LocalNetwork) -> None:
    net.stop_process("coordinator")
    config = _config(net, "coordinator")
    old_state = Path(config["state_dir"])
    config["state_dir"] = str(old_state.parent / "coordinator-fresh")
    write_toml(config, net.config_path("coordinator"))
    time.sleep(3 * HEARTBEAT_S)  # the nodes notice it is gone
    net.start_coordinator()
    start = time.monotonic()

    net.wait_serving(["bank", "core"], timeout=60)

    seconds = time.monotonic() - start
    assert seconds < 20 * HEARTBEAT_S, f"took {seconds:.1f}s"
    store = Store(Path(config["state_dir"]) / "coordinator.sqlite")
    try:
        assert {n.party for n in store.nodes()} == {"bank", "core"}
    finally:
        store.close()
    log = net.log_path("bank").read_text()
    assert log.count("had no record of this node") == 1, log[-3000:]
    assert "lost the coordinator at" in log
    shutil.rmtree(old_state, ignore_errors=True)
