"""fail2ban-style SIP blocking from Asterisk's security events over AMI.

Asterisk reports every failed authentication as an AMI security event (InvalidPassword,
ChallengeResponseFailed, InvalidAccountID, FailedACL) with the remote address. An address with
`fail_threshold` failures inside `fail_window_s` is blocked for `block_s`: a row in the store,
an audit entry, and a pjsip ACL (`cvpbx-blocked`) re-rendered and reloaded, so the block holds
in Asterisk itself with no firewall tooling needed and survives a restart.

Scanners (friendly-scanner, sipvicious) probe accounts that do not exist: res_pjsip raises
InvalidAccountID for every such request (REGISTER, OPTIONS, INVITE alike) before its artificial
endpoint's 401, so a scan counts like failed passwords. The security events carry no
User-Agent, so a scanner's UA itself cannot be matched here; the firewall role rate-limits SIP
per source address as well.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import time
from collections.abc import Mapping

from appliance.pbx.apply import PbxManager
from appliance.pbx.model import Settings
from appliance.privacy import Actor

log = logging.getLogger(__name__)
FAILURE_EVENTS = frozenset(
    {"InvalidPassword", "ChallengeResponseFailed", "InvalidAccountID", "FailedACL"}
)
ACTOR = Actor.system("pbx.security")


def remote_ip(value: str) -> str | None:
    """'IPV4/UDP/192.0.2.7/5060' -> '192.0.2.7'; None if not an address."""
    parts = value.split("/")
    if len(parts) < 3:
        return None
    try:
        return str(ipaddress.ip_address(parts[2]))
    except ValueError:
        return None


class SipGuard:
    def __init__(self, manager: PbxManager) -> None:
        self.manager = manager
        self._failures: dict[str, collections.deque[float]] = {}
        self._blocking: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.blocked_events = 0
        self.settings = Settings()

    def on_event(self, ev: Mapping[str, str]) -> None:
        if ev.get("Event") not in FAILURE_EVENTS:
            return
        ip = remote_ip(ev.get("RemoteAddress", ""))
        if ip is None:
            return
        # FailedACL from an address already blocked is the block working, not a new attempt.
        if ip in self._blocking:
            return
        now = time.monotonic()
        s = self._settings()
        window = self._failures.setdefault(ip, collections.deque())
        window.append(now)
        while window and window[0] < now - s[1]:
            window.popleft()
        if len(window) >= s[0]:
            self._blocking.add(ip)
            task = asyncio.ensure_future(self.block(ip, len(window), ev.get("Event", "")))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _settings(self) -> tuple[int, int, int]:
        st = self.settings
        return st.fail_threshold, st.fail_window_s, st.block_s

    async def refresh_settings(self) -> None:
        _, pbx = await self.manager.current()
        self.settings = pbx.settings

    async def block(self, ip: str, failures: int, kind: str) -> None:
        _, _, block_s = self._settings()
        now = time.time()
        db, audit = self.manager.db, self.manager.privacy.audit
        await db.pbx_block(
            address=ip,
            at=now,
            until=now + block_s,
            failures=failures,
            reason=kind,
            audit=await audit.entry(
                ACTOR,
                "pbx.sip_block",
                f"sip:{ip}",
                "sip security",
                f"{failures} failed authentications ({kind})",
            ),
        )
        log.warning("blocked SIP from %s after %d failed authentications", ip, failures)
        await self.manager.reapply(ACTOR, f"block {ip}")
        self._failures.pop(ip, None)
        self.blocked_events += 1

    async def unblock(self, ip: str, actor: Actor) -> bool:
        audit = await self.manager.privacy.audit.entry(
            actor, "pbx.sip_unblock", f"sip:{ip}", "sip security"
        )
        gone = await self.manager.db.pbx_unblock(ip, audit)
        if gone:
            self._blocking.discard(ip)
            await self.manager.reapply(actor, f"unblock {ip}")
        return gone

    async def expire(self) -> list[str]:
        """Lift blocks whose time is up (called periodically)."""
        now = time.time()
        expired = [
            str(r["address"])
            for r in await self.manager.db.pbx_blocks()
            if float(r["until"]) <= now
        ]
        for ip in expired:
            await self.unblock(ip, ACTOR)
        return expired
