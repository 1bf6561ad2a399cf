"""One change to the network each, with its exact inverse for rollback.

Steps name links rather than hold their indexes: a VLAN created earlier in the same apply has
no index until it exists.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from appliance.net.netlink import Netlink


def _split(cidr: str) -> tuple[str, int]:
    iface = ipaddress.IPv4Interface(cidr)
    return str(iface.ip), iface.network.prefixlen


@dataclass(frozen=True)
class CreateVlan:
    name: str
    parent: str
    vlan_id: int

    def __str__(self) -> str:
        return f"create VLAN {self.vlan_id} as {self.name} on {self.parent}"

    def do(self, nl: Netlink) -> None:
        nl.add_vlan(self.name, nl.index(self.parent), self.vlan_id)

    def undo(self, nl: Netlink) -> None:
        nl.delete_link(nl.index(self.name), self.name)


@dataclass(frozen=True)
class SetUp:
    ifname: str

    def __str__(self) -> str:
        return f"bring {self.ifname} up"

    def do(self, nl: Netlink) -> None:
        nl.set_up(nl.index(self.ifname), self.ifname, up=True)

    def undo(self, nl: Netlink) -> None:
        nl.set_up(nl.index(self.ifname), self.ifname, up=False)


@dataclass(frozen=True)
class AddAddress:
    ifname: str
    cidr: str

    def __str__(self) -> str:
        return f"add address {self.cidr} to {self.ifname}"

    def do(self, nl: Netlink) -> None:
        nl.add_address(nl.index(self.ifname), self.ifname, *_split(self.cidr))

    def undo(self, nl: Netlink) -> None:
        nl.delete_address(nl.index(self.ifname), self.ifname, *_split(self.cidr))


@dataclass(frozen=True)
class RemoveAddress:
    ifname: str
    cidr: str

    def __str__(self) -> str:
        return f"remove address {self.cidr} from {self.ifname}"

    def do(self, nl: Netlink) -> None:
        AddAddress(self.ifname, self.cidr).undo(nl)

    def undo(self, nl: Netlink) -> None:
        AddAddress(self.ifname, self.cidr).do(nl)


@dataclass(frozen=True)
class AddRoute:
    destination: str
    gateway: str

    def __str__(self) -> str:
        return f"add route {self.destination} via {self.gateway}"

    def do(self, nl: Netlink) -> None:
        nl.add_route(self.destination, self.gateway)

    def undo(self, nl: Netlink) -> None:
        nl.delete_route(self.destination, self.gateway)


@dataclass(frozen=True)
class RemoveRoute:
    destination: str
    gateway: str

    def __str__(self) -> str:
        return f"remove route {self.destination} via {self.gateway}"

    def do(self, nl: Netlink) -> None:
        AddRoute(self.destination, self.gateway).undo(nl)

    def undo(self, nl: Netlink) -> None:
        AddRoute(self.destination, self.gateway).do(nl)


Step = CreateVlan | SetUp | AddAddress | RemoveAddress | AddRoute | RemoveRoute
