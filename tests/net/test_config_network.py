"""The [network] section: everything judged from the file alone, before any change."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from appliance import config
from appliance.errors import ConfigError

BASE: dict[str, Any] = {
    "lan_interface": "eth0",
    "lan_address": "192.0.2.10/24",
    "voice_vlan_id": 20,
    "voice_vlan_address": "100.64.20.1/24",
    "routes": [{"destination": "198.51.100.0/24", "gateway": "192.0.2.1"}],
}


def parse(**network: Any) -> config.NetworkConfig:
    return config.parse({"network": network}, base_dir=Path("/")).network


def test_defaults_leave_the_network_alone() -> None:
    cfg = config.parse({}, base_dir=Path("/")).network
    assert cfg.lan_interface == "" and cfg.routes == () and cfg.vlan_interface == ""


def test_a_full_network_section_parses() -> None:
    cfg = parse(**BASE)
    assert cfg.lan_address == ipaddress.IPv4Interface("192.0.2.10/24")
    assert cfg.vlan_interface == "eth0.20"
    assert cfg.routes[0].gateway == ipaddress.IPv4Address("192.0.2.1")


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"lan_address": "192.0.2.300/24"}, "network.lan_address", "not an IPv4 address"),
        ({"lan_address": "192.0.2.10"}, "network.lan_address", "needs a prefix length"),
        ({"lan_address": "192.0.2.0/24"}, "network.lan_address", "network or broadcast"),
        ({"lan_interface": "eth 0"}, "network.lan_interface", "not an interface name"),
        ({"voice_vlan_id": 4095}, "network.voice_vlan_id", "between 0 and 4094"),
        ({"voice_vlan_address": "192.0.2.200/25"}, "network.voice_vlan_address", "overlaps"),
        ({"lan_interface": "enp0s31f6long"}, "network.voice_vlan_id", "15 characters"),
        (
            {"routes": [{"destination": "192.0.2.128/25", "gateway": "192.0.2.1"}]},
            "network.routes[0].destination",
            "overlaps the directly connected lan_address subnet",
        ),
        (
            {"routes": [{"destination": "198.51.100.0/24", "gateway": "203.0.113.1"}]},
            "network.routes[0].gateway",
            "in no directly connected subnet",
        ),
        (
            {"routes": [{"destination": "198.51.100.1/24", "gateway": "192.0.2.1"}]},
            "network.routes[0].destination",
            "host bits set",
        ),
        (
            {"routes": [{"destination": "198.51.100.0/24", "gateway": "192.0.2.1"}] * 2},
            "network.routes[1].destination",
            "routed twice",
        ),
        ({"mtu": 9000}, "network.mtu", "unknown key"),
    ],
)
def test_invalid_network_names_the_field(change: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(**{**BASE, **change})
    assert err.value.field == field
    assert message in err.value.message


def test_vlan_needs_an_address_and_an_address_needs_a_vlan() -> None:
    with pytest.raises(ConfigError, match="required with a voice VLAN"):
        parse(**{k: v for k, v in BASE.items() if k != "voice_vlan_address"})
    with pytest.raises(ConfigError, match=r"without network\.voice_vlan_id"):
        parse(**{k: v for k, v in BASE.items() if k != "voice_vlan_id"})


def test_keys_without_an_interface_are_refused() -> None:
    with pytest.raises(ConfigError) as err:
        parse(lan_address="192.0.2.10/24")
    assert err.value.field == "network.lan_address"
