"""Live PBX status over AMI: trunk registrations and reachability, desk-phone registrations."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from appliance.pbx.model import PbxConfig
from appliance.pbx.render import trunk_endpoint
from appliance.telephony.ami import AmiClient, AmiError


@dataclass
class TrunkStatus:
    name: str
    auth: str
    registration: str = ""
    """Registered / Rejected / Unregistered ... (registration trunks)."""
    reachable: str = ""
    """The qualify result for the trunk's host (Reachable / Unreachable / Unknown)."""
    last_error: str = ""


@dataclass
class ExtensionStatus:
    number: str
    name: str
    enabled: bool
    registered: bool = False
    user_agent: str = ""
    address: str = ""
    last_seen: float | None = None
    """When the phone last (re-)registered, as the running appliance saw it."""
    expires_at: float | None = None
    """When its registration runs out unless renewed."""


@dataclass
class PbxStatus:
    reachable: bool
    error: str = ""
    trunks: list[TrunkStatus] = field(default_factory=list)
    extensions: list[ExtensionStatus] = field(default_factory=list)


async def pbx_status(ami: AmiClient | None, pbx: PbxConfig) -> PbxStatus:
    trunks = [TrunkStatus(t.name, t.auth) for t in pbx.trunks if t.enabled]
    exts = [ExtensionStatus(e.number, e.name, e.enabled) for e in pbx.extensions]
    if ami is None or not ami.connected:
        return PbxStatus(False, "Asterisk not reachable over AMI", trunks, exts)
    try:
        regs = await ami.action_list("PJSIPShowRegistrationsOutbound")
        by_reg = {
            r.get("ObjectName", ""): r
            for r in regs
            if r.get("Event") == "OutboundRegistrationDetail"
        }
        for t in trunks:
            ep = trunk_endpoint(t.name)
            reg = by_reg.get(f"{ep}-reg")
            if reg is not None:
                t.registration = reg.get("Status", "")
                if t.registration not in ("Registered", ""):
                    t.last_error = f"registration {t.registration.lower()}"
            contacts = await _contacts(ami, ep)
            if contacts:
                t.reachable = contacts[0].get("Status", "")
                if t.reachable == "Unreachable" and not t.last_error:
                    t.last_error = "host does not answer OPTIONS"
        for e in exts:
            if not e.enabled:
                continue
            live = [c for c in await _contacts(ami, e.number) if c.get("URI")]
            if not live:
                continue
            c = live[0]
            e.registered = c.get("Status", "") != "Unreachable"
            e.user_agent = c.get("UserAgent", "")
            e.address = c.get("ViaAddress", "") or c.get("URI", "")
            with contextlib.suppress(ValueError):
                e.expires_at = float(c.get("RegExpire", "")) or None
    except AmiError as exc:
        return PbxStatus(False, str(exc), trunks, exts)
    return PbxStatus(True, "", trunks, exts)


async def _contacts(ami: AmiClient, endpoint: str) -> list[dict[str, str]]:
    """The endpoint's contacts with their qualify status (ContactStatusDetail events)."""
    try:
        rows = await ami.action_list("PJSIPShowEndpoint", Endpoint=endpoint)
    except AmiError:
        return []  # not loaded (disabled, or Asterisk not yet reloaded)
    return [r for r in rows if r.get("Event") == "ContactStatusDetail"]
