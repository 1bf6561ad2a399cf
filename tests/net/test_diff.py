"""diff(): the ordered steps from a live state to the config (pure; the namespace tests in
tests/integration/test_network.py run them against a real kernel)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from appliance import config, net
from appliance.errors import ConfigError
from appliance.net.netlink import RTPROT_CALLVAULT
from appliance.net.state import Address, Link, NetState, Route

LAN = Link(index=2, name="eth0", kind="", up=True, parent=None, vlan_id=None, operstate="UP")


def cfg(**network: Any) -> config.NetworkConfig:
    base = {
        "lan_interface": "eth0",
        "lan_address": "192.0.2.10/24",
        "routes": [{"destination": "198.51.100.0/24", "gateway": "192.0.2.1"}],
    }
    return config.parse({"network": {**base, **network}}, base_dir=Path("/")).network


def state(
    *links: Link, addresses: tuple[Address, ...] = (), routes: tuple[Route, ...] = ()
) -> NetState:
    return NetState(links=(LAN, *links), addresses=addresses, routes=routes)


def test_in_sync_means_no_steps() -> None:
    live = state(
        addresses=(Address("eth0", "192.0.2.10", 24),),
        routes=(Route("198.51.100.0/24", "192.0.2.1", "eth0", RTPROT_CALLVAULT),),
    )
    assert net.diff(cfg(), live) == []


def test_unmanaged_network_means_no_steps() -> None:
    empty = config.parse({}, base_dir=Path("/")).network
    assert net.diff(empty, state()) == []


def test_removals_come_first_and_foreign_routes_stay() -> None:
    live = state(
        addresses=(Address("eth0", "192.0.2.99", 24), Address("lo", "127.0.0.1", 8)),
        routes=(
            Route("203.0.113.0/24", "192.0.2.1", "eth0", RTPROT_CALLVAULT),
            Route("0.0.0.0/0", "192.0.2.254", "eth0", 3),  # the installer's default route
        ),
    )
    assert [
        str(s) for s in net.diff(cfg(voice_vlan_id=20, voice_vlan_address="100.64.0.1/24"), live)
    ] == [
        "remove route 203.0.113.0/24 via 192.0.2.1",
        "remove address 192.0.2.99/24 from eth0",
        "create VLAN 20 as eth0.20 on eth0",
        "bring eth0.20 up",
        "add address 192.0.2.10/24 to eth0",
        "add address 100.64.0.1/24 to eth0.20",
        "add route 198.51.100.0/24 via 192.0.2.1",
    ]


def test_a_link_named_like_the_vlan_but_not_it_is_refused() -> None:
    impostor = Link(3, "eth0.20", "veth", True, None, None, "UP")
    with pytest.raises(ConfigError) as err:
        net.diff(cfg(voice_vlan_id=20, voice_vlan_address="100.64.0.1/24"), state(impostor))
    assert err.value.field == "network.voice_vlan_id"
    assert "is not VLAN 20 on eth0" in str(err.value)


def test_state_as_dict_marks_managed_routes() -> None:
    live = state(routes=(Route("198.51.100.0/24", "192.0.2.1", "eth0", RTPROT_CALLVAULT),))
    d = live.as_dict()
    assert d["routes"][0]["managed"] is True
    assert d["links"][0]["name"] == "eth0"
