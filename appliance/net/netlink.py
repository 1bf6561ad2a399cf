"""A small typed face on pyroute2's IPRoute: the only module that touches netlink.

pyroute2 is untyped and raises NetlinkError with bare errno tuples; here every call is typed
and every kernel refusal becomes a NetworkError that says what was attempted.
"""

from __future__ import annotations

import errno
from types import TracebackType
from typing import Any

# pyroute2 ships no type information; this module is its typed boundary.
from pyroute2 import IPRoute  # type: ignore[import-untyped]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from appliance.errors import CallvaultError

AF_INET = 2
MAIN_TABLE = 254
# Routes this appliance installs carry their own protocol number, so a later apply can tell
# them from routes the kernel, DHCP or an operator added and removes only its own stale ones.
RTPROT_CALLVAULT = 186
IFF_UP = 0x1


class NetlinkFailed(CallvaultError):
    """The kernel refused a change; `what` names it."""

    def __init__(self, what: str, exc: NetlinkError) -> None:
        code = int(exc.code)
        hint = ""
        if code == errno.EOPNOTSUPP and "vlan" in what:
            hint = " (this kernel has no 802.1Q VLAN support: CONFIG_VLAN_8021Q / module 8021q)"
        super().__init__(f"{what}: {errno.errorcode.get(code, code)} {exc.args[-1]}{hint}")
        self.what = what
        self.code = code


class Netlink:
    """RTNL in the current network namespace, or in `netns` (a name under /run/netns)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        kwargs: dict[str, Any] = {"netns": netns} if netns else {}
        self._ipr: Any = IPRoute(**kwargs)

    def __enter__(self) -> Netlink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._ipr.close()

    def _call(self, what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self._ipr, method)(*args, **kwargs)
        except NetlinkError as exc:
            raise NetlinkFailed(what, exc) from None

    # -- reads: raw messages, decoded by appliance.net.state

    def links(self) -> list[Any]:
        return list(self._call("list links", "get_links"))

    def addresses(self) -> list[Any]:
        return list(self._call("list addresses", "get_addr", family=AF_INET))

    def routes(self) -> list[Any]:
        return list(self._call("list routes", "get_routes", family=AF_INET, table=MAIN_TABLE))

    def index(self, name: str) -> int:
        found = self._call(f"look up link {name}", "link_lookup", ifname=name)
        if not found:
            raise CallvaultError(f"link {name} does not exist")
        return int(found[0])

    # -- changes

    def add_vlan(self, name: str, parent: int, vlan_id: int) -> None:
        self._call(
            f"create vlan {name}", "link", "add", ifname=name, kind="vlan", link=parent,
            vlan_id=vlan_id,
        )  # fmt: skip

    def delete_link(self, index: int, name: str) -> None:
        self._call(f"delete link {name}", "link", "del", index=index)

    def set_up(self, index: int, name: str, *, up: bool) -> None:
        state = "up" if up else "down"
        self._call(f"set {name} {state}", "link", "set", index=index, state=state)

    def add_address(self, index: int, ifname: str, address: str, prefixlen: int) -> None:
        self._call(
            f"add address {address}/{prefixlen} to {ifname}", "addr", "add", index=index,
            address=address, prefixlen=prefixlen,
        )  # fmt: skip

    def delete_address(self, index: int, ifname: str, address: str, prefixlen: int) -> None:
        self._call(
            f"remove address {address}/{prefixlen} from {ifname}", "addr", "del", index=index,
            address=address, prefixlen=prefixlen,
        )  # fmt: skip

    def add_route(self, destination: str, gateway: str) -> None:
        self._call(
            f"add route {destination} via {gateway}", "route", "add", dst=destination,
            gateway=gateway, proto=RTPROT_CALLVAULT, table=MAIN_TABLE,
        )  # fmt: skip

    def delete_route(self, destination: str, gateway: str) -> None:
        self._call(
            f"remove route {destination} via {gateway}", "route", "del", dst=destination,
            gateway=gateway, proto=RTPROT_CALLVAULT, table=MAIN_TABLE,
        )  # fmt: skip
