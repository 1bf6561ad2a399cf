"""The live IPv4 network state, decoded from netlink into plain typed values.

The admin UI shows `NetState.as_dict()`; apply compares it with the config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from appliance.net.netlink import IFF_UP, RTPROT_CALLVAULT, Netlink


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str
    """`vlan`, `veth`, … or "" for plain hardware interfaces."""
    up: bool
    parent: int | None
    vlan_id: int | None
    operstate: str


@dataclass(frozen=True)
class Address:
    ifname: str
    address: str
    prefixlen: int

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefixlen}"


@dataclass(frozen=True)
class Route:
    destination: str
    gateway: str | None
    ifname: str | None
    proto: int

    @property
    def ours(self) -> bool:
        return self.proto == RTPROT_CALLVAULT


@dataclass(frozen=True)
class NetState:
    links: tuple[Link, ...]
    addresses: tuple[Address, ...]
    routes: tuple[Route, ...]

    def link(self, name: str) -> Link | None:
        return next((ln for ln in self.links if ln.name == name), None)

    def addresses_of(self, ifname: str) -> tuple[Address, ...]:
        return tuple(a for a in self.addresses if a.ifname == ifname)

    def as_dict(self) -> dict[str, Any]:
        return {
            "links": [asdict(ln) for ln in self.links],
            "addresses": [{**asdict(a), "cidr": a.cidr} for a in self.addresses],
            "routes": [{**asdict(r), "managed": r.ours} for r in self.routes],
        }


def read_state(nl: Netlink) -> NetState:
    links = tuple(sorted((_link(m) for m in nl.links()), key=lambda ln: ln.index))
    names = {ln.index: ln.name for ln in links}
    addresses = tuple(
        sorted(
            (
                Address(names.get(m["index"], "?"), m.get_attr("IFA_ADDRESS"), m["prefixlen"])
                for m in nl.addresses()
            ),
            key=lambda a: (a.ifname, a.address),
        )
    )
    routes = tuple(sorted((_route(m, names) for m in nl.routes()), key=lambda r: r.destination))
    return NetState(links, addresses, routes)


def _link(m: Any) -> Link:
    info = m.get_attr("IFLA_LINKINFO")
    kind = (info.get_attr("IFLA_INFO_KIND") if info else None) or ""
    vlan_id = None
    if kind == "vlan":
        data = info.get_attr("IFLA_INFO_DATA")
        vlan_id = data.get_attr("IFLA_VLAN_ID") if data else None
    return Link(
        index=int(m["index"]),
        name=str(m.get_attr("IFLA_IFNAME")),
        kind=str(kind),
        up=bool(m["flags"] & IFF_UP),
        parent=m.get_attr("IFLA_LINK"),
        vlan_id=vlan_id,
        operstate=str(m.get_attr("IFLA_OPERSTATE") or "UNKNOWN"),
    )


def _route(m: Any, names: dict[int, str]) -> Route:
    dst = m.get_attr("RTA_DST") or "0.0.0.0"  # noqa: S104 -- the default route, not a bind
    oif = m.get_attr("RTA_OIF")
    return Route(
        destination=f"{dst}/{m['dst_len']}",
        gateway=m.get_attr("RTA_GATEWAY"),
        ifname=names.get(oif) if oif is not None else None,
        proto=int(m["proto"]),
    )
