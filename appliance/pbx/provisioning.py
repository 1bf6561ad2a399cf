"""Desk-phone auto-provisioning: a Yealink `<mac>.cfg` per phone, served over HTTP on the LAN.

A phone whose extension names its MAC fetches `http://<box>:<port>/<mac>.cfg` at boot. The
file carries the SIP password, so it is handed out once per issue (extension created, password
regenerated, MAC changed): later fetches get 410 until the admin re-issues it, and requests
from outside the LAN networks get 403. Every delivery and refusal is audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import time

from appliance.pbx.apply import PbxManager
from appliance.pbx.model import Extension
from appliance.privacy import Actor

log = logging.getLogger(__name__)
ACTOR = Actor.system("pbx.provisioning")
_PATH = re.compile(r"^/([0-9a-f]{12})\.cfg$")


def yealink_cfg(ext: Extension, server: str, port: int) -> str:
    """Yealink T4x/T5x auto-provisioning file (account 1, UDP)."""
    return "\n".join(
        [
            "#!version:1.0.0.1",
            "account.1.enable = 1",
            f"account.1.label = {ext.number}",
            f"account.1.display_name = {ext.name}",
            f"account.1.auth_name = {ext.number}",
            f"account.1.user_name = {ext.number}",
            f"account.1.password = {ext.password}",
            f"account.1.sip_server.1.address = {server}",
            f"account.1.sip_server.1.port = {port}",
            "account.1.sip_server.1.transport_type = 0",
            "account.1.sip_server.1.expires = 300",
            f"voice_mail.number.1 = {'*97' if ext.voicemail else ''}",
            "",
        ]
    )


def on_lan(address: str, lan: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(n, strict=False) for n in lan)


class ProvisioningServer:
    """A minimal HTTP/1.0 GET server: one request per connection, only `/<mac>.cfg`."""

    def __init__(self, manager: PbxManager, host: str, port: int) -> None:
        self.manager = manager
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(5):
                request = await reader.readline()
                while (await reader.readline()).strip():
                    pass
            status, body = await self.answer(request.decode(errors="replace"), writer)
        except (TimeoutError, ConnectionError):
            status, body = 408, "timeout\n"
        head = f"HTTP/1.0 {status} {_REASONS.get(status, 'Error')}\r\n"
        head += "Content-Type: text/plain\r\nCache-Control: no-store\r\n"
        head += f"Content-Length: {len(body.encode())}\r\n\r\n"
        with contextlib.suppress(ConnectionError):
            writer.write(head.encode() + body.encode())
            await writer.drain()
            writer.close()

    async def answer(self, request_line: str, writer: asyncio.StreamWriter) -> tuple[int, str]:
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if peer else ""
        local = writer.get_extra_info("sockname")
        parts = request_line.split()
        if len(parts) < 2 or parts[0] != "GET":
            return 405, "GET only\n"
        m = _PATH.match(parts[1])
        if m is None:
            return 404, "not found\n"
        mac = m.group(1)
        _, pbx = await self.manager.current()
        audit = self.manager.privacy.audit
        if not on_lan(client, pbx.settings.lan):
            await audit.record(
                ACTOR,
                "pbx.provision_refused",
                f"phone:{mac}",
                "provisioning",
                f"from {client}: not on the LAN",
            )
            return 403, "not on the LAN\n"
        ext = next((e for e in pbx.extensions if e.mac == mac and e.enabled), None)
        if ext is None:
            return 404, "no extension for this phone\n"
        taken = await self.manager.db.pbx_provision_take(mac, time.time())
        if taken != ext.number:
            await audit.record(
                ACTOR,
                "pbx.provision_refused",
                f"phone:{mac}",
                "provisioning",
                f"from {client}: already delivered",
            )
            return 410, "already delivered; regenerate the extension's password to re-provision\n"
        await audit.record(
            ACTOR,
            "pbx.provision",
            f"phone:{mac}",
            "provisioning",
            f"extension {ext.number} to {client}",
        )
        server = str(local[0]) if local else self.host
        return 200, yealink_cfg(ext, server, self.manager.cfg.asterisk.sip_port)


_REASONS = {200: "OK", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 410: "Gone"}  # fmt: skip
