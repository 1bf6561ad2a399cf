"""appliance.net against real network namespaces the test creates (veth pairs, routes, VLAN).

Each test gets a namespace "box" whose `lan0` is one end of a veth pair; the other end sits in
a "router" namespace. Nothing here touches the host's own interfaces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance import config, net
from appliance.config import NetworkConfig
from appliance.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
DEV_CONFIG = REPO / "config" / "callvault.dev.toml"

BASE = {
    "lan_interface": "lan0",
    "lan_address": "192.0.2.10/24",
    "routes": [{"destination": "198.51.100.0/24", "gateway": "192.0.2.1"}],
}


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=10)


@dataclass
class Box:
    ns: str
    router: str

    def nl(self) -> net.Netlink:
        return net.Netlink(self.ns)

    def state(self) -> net.NetState:
        with self.nl() as nl:
            return net.read_state(nl)


@pytest.fixture
def box() -> Iterator[Box]:
    if os.geteuid() != 0:
        pytest.fail("network namespace tests need root")
    tag = uuid.uuid4().hex[:6]
    b = Box(ns=f"cvt-box-{tag}", router=f"cvt-rtr-{tag}")
    ip("netns", "add", b.ns)
    ip("netns", "add", b.router)
    try:
        ip("-n", b.ns, "link", "add", "lan0", "type", "veth", "peer", "name", "up0",
           "netns", b.router)  # fmt: skip
        ip("-n", b.router, "link", "set", "up0", "up")
        ip("-n", b.router, "addr", "add", "192.0.2.1/24", "dev", "up0")
        yield b
    finally:
        ip("netns", "del", b.ns, check=False)
        ip("netns", "del", b.router, check=False)


def network(**overrides: object) -> NetworkConfig:
    raw = tomllib.loads(DEV_CONFIG.read_text())
    raw["network"] = {**BASE, **overrides}
    return config.parse(raw, base_dir=DEV_CONFIG.parent).network


def vlan_supported() -> bool:
    """Whether this kernel can make 802.1Q interfaces (probed in a scratch namespace)."""
    ns = f"cvt-probe-{uuid.uuid4().hex[:6]}"
    ip("netns", "add", ns)
    try:
        ip("-n", ns, "link", "add", "p0", "type", "veth", "peer", "name", "p1")
        return ip("-n", ns, "link", "add", "link", "p0", "name", "p0.5", "type", "vlan", "id",
                  "5", check=False).returncode == 0  # fmt: skip
    finally:
        ip("netns", "del", ns, check=False)


def test_apply_reaches_the_configured_state_then_changes_nothing(box: Box) -> None:
    cfg = network()
    with box.nl() as nl:
        steps = net.apply(cfg, nl)
    assert [str(s) for s in steps] == [
        "bring lan0 up",
        "add address 192.0.2.10/24 to lan0",
        "add route 198.51.100.0/24 via 192.0.2.1",
    ]
    state = box.state()
    lan = state.link("lan0")
    assert lan is not None and lan.up
    assert [a.cidr for a in state.addresses_of("lan0")] == ["192.0.2.10/24"]
    ours = [r for r in state.routes if r.ours]
    assert [(r.destination, r.gateway, r.ifname) for r in ours] == [
        ("198.51.100.0/24", "192.0.2.1", "lan0")
    ]
    # The kernel's own lookup sends the trunk's network through the router.
    lookup = ip("-n", box.ns, "route", "get", "198.51.100.7").stdout
    assert "via 192.0.2.1 dev lan0 src 192.0.2.10" in lookup

    with box.nl() as nl:
        assert net.apply(cfg, nl) == []
    assert box.state() == state


def test_a_changed_config_replaces_only_what_changed(box: Box) -> None:
    with box.nl() as nl:
        net.apply(network(), nl)
        steps = net.apply(
            network(
                lan_address="192.0.2.20/24",
                routes=[{"destination": "203.0.113.0/24", "gateway": "192.0.2.1"}],
            ),
            nl,
        )
    assert [str(s) for s in steps] == [
        "remove route 198.51.100.0/24 via 192.0.2.1",
        "remove address 192.0.2.10/24 from lan0",
        "add address 192.0.2.20/24 to lan0",
        "add route 203.0.113.0/24 via 192.0.2.1",
    ]
    state = box.state()
    assert [a.cidr for a in state.addresses_of("lan0")] == ["192.0.2.20/24"]
    assert [r.destination for r in state.routes if r.ours] == ["203.0.113.0/24"]


def test_a_failing_step_restores_the_previous_state(box: Box) -> None:
    # An address the config replaces, and a route someone else put on the trunk's network (a
    # blackhole): the kernel refuses our route (EEXIST) after the address steps already ran.
    ip("-n", box.ns, "link", "set", "lan0", "up")
    ip("-n", box.ns, "addr", "add", "192.0.2.99/24", "dev", "lan0")
    ip("-n", box.ns, "route", "add", "blackhole", "198.51.100.0/24")
    before = box.state()
    with box.nl() as nl, pytest.raises(net.NetworkError) as err:
        net.apply(network(), nl)
    assert err.value.restored
    assert "add route 198.51.100.0/24 via 192.0.2.1 failed" in str(err.value)
    assert "EEXIST" in str(err.value)
    assert "previous network state restored" in str(err.value)
    after = box.state()
    assert [a.cidr for a in after.addresses_of("lan0")] == ["192.0.2.99/24"]
    assert set(after.routes) == set(before.routes)


def test_voice_vlan_is_created_or_refused_without_a_trace(box: Box) -> None:
    cfg = network(voice_vlan_id=20, voice_vlan_address="100.64.20.1/24")
    before = box.state()
    if vlan_supported():
        with box.nl() as nl:
            net.apply(cfg, nl)
            assert net.apply(cfg, nl) == []
        vlan = box.state().link("lan0.20")
        assert vlan is not None and vlan.kind == "vlan" and vlan.vlan_id == 20 and vlan.up
        assert [a.cidr for a in box.state().addresses_of("lan0.20")] == ["100.64.20.1/24"]
        return
    # This kernel has no 802.1Q (CONFIG_VLAN_8021Q unset, as on the CI VMs): creating the VLAN
    # is the step that fails, after the LAN link came up -- everything must be undone.
    with box.nl() as nl, pytest.raises(net.NetworkError) as err:
        net.apply(cfg, nl)
    assert err.value.restored, str(err.value)
    assert "create VLAN 20 as lan0.20 on lan0 failed" in str(err.value)
    assert "802.1Q" in str(err.value)
    after = box.state()
    assert after.addresses == before.addresses and after.routes == before.routes
    lan = after.link("lan0")
    assert lan is not None and not lan.up


def test_unknown_interface_is_refused_before_any_change(box: Box) -> None:
    before = box.state()
    with box.nl() as nl, pytest.raises(ConfigError) as err:
        net.apply(network(lan_interface="eth9"), nl)
    assert err.value.field == "network.lan_interface"
    assert "no interface 'eth9'" in str(err.value)
    assert box.state() == before


def test_overlapping_subnets_are_refused_before_any_change(box: Box) -> None:
    before = box.state()
    with pytest.raises(ConfigError) as err:
        network(voice_vlan_id=20, voice_vlan_address="192.0.2.130/25")
    assert err.value.field == "network.voice_vlan_address"
    assert "overlaps the LAN subnet 192.0.2.0/24" in str(err.value)
    assert box.state() == before


def test_cli_show_reports_live_state_and_pending_changes(box: Box, tmp_path: Path) -> None:
    raw = DEV_CONFIG.read_text().replace("../var", str(tmp_path))
    cfg_file = tmp_path / "callvault.toml"
    net_toml = (
        '\n[network]\nlan_interface = "lan0"\nlan_address = "192.0.2.10/24"\n'
        '[[network.routes]]\ndestination = "198.51.100.0/24"\ngateway = "192.0.2.1"\n'
    )
    cfg_file.write_text(raw + net_toml)
    cli = [sys.executable, "-m", "appliance.cli", "--config", str(cfg_file), "net"]
    shown = subprocess.run([*cli, "show", "--json", "--netns", box.ns],
                           capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    assert json.loads(shown.stdout)["pending"] == [
        "bring lan0 up",
        "add address 192.0.2.10/24 to lan0",
        "add route 198.51.100.0/24 via 192.0.2.1",
    ]
    applied = subprocess.run([*cli, "apply", "--netns", box.ns],
                             capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    assert "3 changes" in applied.stdout
    shown = subprocess.run([*cli, "show", "--json", "--netns", box.ns],
                           capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    state = json.loads(shown.stdout)
    assert state["pending"] == []
    assert {"ifname": "lan0", "address": "192.0.2.10", "prefixlen": 24,
            "cidr": "192.0.2.10/24"} in state["addresses"]  # fmt: skip
    assert any(r["destination"] == "198.51.100.0/24" and r["managed"] for r in state["routes"])
