"""Plan the changes from the config to the live network, apply them, roll back on failure.

Everything that can be known before touching the box is checked first (the config itself by
appliance.config; here: the interfaces exist, a link of the VLAN's name is that VLAN), so an
invalid config changes nothing. A step the kernel refuses half-way undoes the steps already
taken, newest first, and the result is compared with the state read before the first change.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from appliance.config import NetworkConfig
from appliance.errors import CallvaultError, ConfigError
from appliance.net.netlink import Netlink
from appliance.net.state import NetState, read_state
from appliance.net.steps import (
    AddAddress,
    AddRoute,
    CreateVlan,
    RemoveAddress,
    RemoveRoute,
    SetUp,
    Step,
)

log = logging.getLogger(__name__)


class NetworkError(CallvaultError):
    """Applying failed at `step`; `restored` says whether the previous state is back."""

    def __init__(self, step: Step, cause: Exception, *, restored: bool, detail: str = "") -> None:
        outcome = (
            "previous network state restored"
            if restored
            else f"ROLLBACK INCOMPLETE, fix by hand: {detail}"
        )
        super().__init__(f"network: {step} failed ({cause}); {outcome}")
        self.step = step
        self.restored = restored


def diff(cfg: NetworkConfig, state: NetState) -> list[Step]:
    """The ordered steps that take `state` to `cfg`; empty when the box is already there."""
    if not cfg.lan_interface or cfg.lan_address is None:
        return []
    _check_live(cfg, state)
    want_addr = {cfg.lan_interface: str(cfg.lan_address)}
    if cfg.voice_vlan_address is not None:
        want_addr[cfg.vlan_interface] = str(cfg.voice_vlan_address)
    want_routes = {(str(r.destination), str(r.gateway)) for r in cfg.routes}

    removals: list[Step] = [
        RemoveRoute(r.destination, r.gateway)
        for r in state.routes
        if r.ours and r.gateway and (r.destination, r.gateway) not in want_routes
    ]
    removals += [
        RemoveAddress(a.ifname, a.cidr)
        for ifname, cidr in want_addr.items()
        for a in state.addresses_of(ifname)
        if a.cidr != cidr
    ]
    additions: list[Step] = []
    if cfg.voice_vlan_id and state.link(cfg.vlan_interface) is None:
        additions.append(CreateVlan(cfg.vlan_interface, cfg.lan_interface, cfg.voice_vlan_id))
    for ifname in want_addr:
        link = state.link(ifname)
        if link is None or not link.up:
            additions.append(SetUp(ifname))
    additions += [
        AddAddress(ifname, cidr)
        for ifname, cidr in want_addr.items()
        if cidr not in {a.cidr for a in state.addresses_of(ifname)}
    ]
    have_routes = {(r.destination, r.gateway) for r in state.routes if r.ours}
    additions += [AddRoute(d, g) for d, g in sorted(want_routes - have_routes)]
    return removals + additions


def _check_live(cfg: NetworkConfig, state: NetState) -> None:
    if state.link(cfg.lan_interface) is None:
        known = ", ".join(ln.name for ln in state.links)
        raise ConfigError(
            "network.lan_interface", f"no interface {cfg.lan_interface!r} on this box ({known})"
        )
    vlan = state.link(cfg.vlan_interface) if cfg.voice_vlan_id else None
    lan = state.link(cfg.lan_interface)
    if (
        vlan is not None
        and lan is not None
        and (vlan.kind != "vlan" or vlan.vlan_id != cfg.voice_vlan_id or vlan.parent != lan.index)
    ):
        raise ConfigError(
            "network.voice_vlan_id",
            f"{cfg.vlan_interface} exists but is not VLAN {cfg.voice_vlan_id} on "
            f"{cfg.lan_interface} (kind {vlan.kind or 'physical'}, id {vlan.vlan_id})",
        )


def apply(cfg: NetworkConfig, nl: Netlink) -> list[Step]:
    """Apply the config; returns the steps taken (empty: nothing to change)."""
    before = read_state(nl)
    steps = diff(cfg, before)
    done: list[Step] = []
    for step in steps:
        try:
            step.do(nl)
        except CallvaultError as exc:
            log.warning("network: %s failed (%s); rolling back %d steps", step, exc, len(done))
            undo_errors = _undo(done, nl)
            mismatch = _compare(before, read_state(nl))
            detail = "; ".join([*undo_errors, *mismatch])
            raise NetworkError(step, exc, restored=not detail, detail=detail) from exc
        log.info("network: %s", step)
        done.append(step)
    return done


def _undo(done: list[Step], nl: Netlink) -> list[str]:
    errors = []
    for step in reversed(done):
        try:
            step.undo(nl)
        except CallvaultError as exc:
            # Keep undoing the rest: a partial rollback is better than none, and each failure
            # goes into the error the operator reads.
            errors.append(f"undo of {step} failed: {exc}")
    return errors


def _compare(before: NetState, after: NetState) -> list[str]:
    """What differs, ignoring operstate (it follows carrier asynchronously)."""
    out: list[str] = []
    pairs: tuple[tuple[str, set[object], set[object]], ...] = (
        (
            "link",
            {replace(ln, operstate="") for ln in before.links},
            {replace(ln, operstate="") for ln in after.links},
        ),
        ("address", set(before.addresses), set(after.addresses)),
        ("route", set(before.routes), set(after.routes)),
    )
    for what, old, new in pairs:
        out += [f"{what} {x} was lost" for x in old - new]
        out += [f"{what} {x} was left behind" for x in new - old]
    return out
