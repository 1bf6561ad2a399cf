"""PBX configuration through the real Asterisk sandbox (issue 11).

A pjsua2 user agent on 127.0.0.3:5090 plays the carrier behind an IP-authenticated trunk; a
pjsua2 phone registers as a store-made extension with its generated password. Routes follow a
clock the test controls; a raw UDP client fails digest authentication from 127.0.0.4 until
the SIP guard blocks it.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import pytest_asyncio

from appliance.config import Config
from appliance.pbx.apply import ApplyError, new_password, upsert
from appliance.pbx.model import (
    Extension,
    InboundRoute,
    OutboundRule,
    Override,
    PbxConfig,
    Trunk,
)
from appliance.pbx.render import DIALPLAN_FILE, FILES, PJSIP_FILE
from appliance.pbx.service import PbxService
from appliance.privacy import Actor
from appliance.server import Appliance
from appliance.telephony.sip import PjRuntime, SipPhone

pytestmark = pytest.mark.asyncio(loop_scope="session")
ADMIN = Actor(name="user:it-admin", role="admin")
CARRIER_IP, CARRIER_PORT = "127.0.0.3", 5090
ATTACKER_IP = "127.0.0.4"
DID = "4631100200"
CALLER = "46701234567"
OPEN = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # a Tuesday, 10:00
CLOSED = datetime(2026, 11, 24, 20, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = OPEN

    def __call__(self) -> datetime:
        return self.now


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pbx(app: Appliance, cfg: Config) -> AsyncIterator[tuple[PbxService, Clock]]:
    clock = Clock()
    svc = PbxService(cfg, app.db, app.telephony.privacy, clock=clock)
    await svc.start(loops=False)
    yield svc, clock
    # Leave Asterisk as the other tests expect it: no store objects, no blocks.
    for row in await app.db.pbx_blocks():
        await svc.guard.unblock(str(row["address"]), ADMIN)
    await svc.manager.apply(PbxConfig(), ADMIN, "test teardown")
    etc = cfg.asterisk.host_path(cfg.asterisk.config_dir)
    for name in FILES:
        (etc / name).unlink(missing_ok=True)
    for module in ("res_pjsip.so", "pbx_config.so"):
        await svc.ami.action("Reload", Module=module)
    await svc.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def carrier(app: Appliance, runtime: PjRuntime) -> AsyncIterator[SipPhone]:
    # Its user name is the caller's number as the box sees it on inbound calls.
    ua = SipPhone(username=CALLER, bind_host=CARRIER_IP, bind_port=CARRIER_PORT, runtime=runtime)
    await ua.start()
    yield ua
    await ua.stop()


def base_config(ext_password: str) -> PbxConfig:
    return PbxConfig(
        trunks=(
            Trunk(name="carrier", host=CARRIER_IP, port=CARRIER_PORT, dids=(DID,),
                  caller_id="4631100299", max_channels=4),
        ),
        extensions=(Extension(number="301", name="Sales desk", password=ext_password),),
        routes=(
            InboundRoute(did=DID, destination="extension:301",
                         closed_destination="line:reception",
                         hours=("mon-fri 08:00-17:00",), holidays=("2026-12-24",),
                         timezone="UTC"),
        ),
        outbound=(OutboundRule(name="national", patterns=("_0X.",), trunk="carrier",
                               members=("301",), caller_id="4631100250"),),
    )  # fmt: skip


async def call_did(carrier: SipPhone, cfg: Config) -> object:
    return await carrier.dial(f"sip:{DID}@127.0.0.1:{cfg.asterisk.sip_port}", wait_answer=10)


async def line_cdr_since(app: Appliance, line: str, t0: float, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for r in await app.db.cdrs(limit=50):
            if r["line"] == line and float(r["start_at"]) >= t0 - 1:
                return r
        await asyncio.sleep(0.2)
    raise AssertionError(f"no CDR of a call to line {line!r}")


async def test_trunk_extension_routes_outbound_rollback(
    app: Appliance, cfg: Config, runtime: PjRuntime, pbx: tuple[PbxService, Clock],
    carrier: SipPhone,
) -> None:  # fmt: skip
    svc, clock = pbx
    password = new_password()
    first = await svc.manager.apply(base_config(password), ADMIN, "trunk, desk phone, route")
    assert set(first.reloaded) == {"res_pjsip.so", "pbx_config.so", "app_voicemail.so"}

    phone = SipPhone(username="301", password=password, registrar_host="127.0.0.1",
                     registrar_port=cfg.asterisk.sip_port, display_name="Sales desk",
                     runtime=runtime)  # fmt: skip
    await phone.start()
    try:
        # Live status over AMI: the trunk's host and the phone's registration.
        status = await svc.status()
        ext = next(e for e in status.extensions if e.number == "301")
        assert ext.registered and "127.0.0.1" in ext.address and ext.user_agent, status
        assert ext.expires_at is not None and ext.expires_at > time.time()
        assert status.trunks[0].name == "carrier" and status.trunks[0].reachable, status

        # Open hours: the DID rings the desk phone.
        clock.now = OPEN
        await svc.manager.sync_time_conditions()
        call = await call_did(carrier, cfg)
        incoming = await phone.next_incoming(timeout=10)
        await call.hangup()
        await incoming.wait_ended(10)

        # Closed (evening): the AI line answers.
        clock.now = CLOSED
        await svc.manager.sync_time_conditions()
        t0 = time.time()
        call = await call_did(carrier, cfg)
        await asyncio.sleep(0.5)
        await call.hangup()
        cdr = await line_cdr_since(app, "reception", t0)
        assert cdr["calling_number"] == CALLER
        assert phone._incoming.empty()

        # Holiday at 10:00 counts as closed too.
        clock.now = datetime(2026, 12, 24, 10, 0, tzinfo=UTC)
        assert (await svc.manager.sync_time_conditions())[DID] is False

        # Outbound from the desk phone leaves via the trunk with the rule's caller ID.
        out = await phone.dial("0701234567")
        leg = await carrier.next_incoming(timeout=10)
        assert leg.remote_caller_id_number == "4631100250"
        assert "0701234567" in leg.sip_headers.get("To", "")
        await out.hangup()
        await leg.wait_ended(10)

        # A caller-ID override: this caller reaches the echo line even in open hours.
        clock.now = OPEN
        await svc.manager.sync_time_conditions()
        _, plain = await svc.manager.current()
        override = (Override(CALLER[:4], "line:echo"),)
        await svc.manager.apply(
            upsert(plain, "route", replace(plain.routes[0], overrides=override)), ADMIN, "vip"
        )
        t0 = time.time()
        call = await call_did(carrier, cfg)
        await asyncio.sleep(0.3)
        await call.hangup()
        await line_cdr_since(app, "echo", t0)
        assert phone._incoming.empty()
        await svc.manager.apply(plain, ADMIN, "no override")

        # A change that would break the config is refused with the reason; nothing changes.
        target = cfg.asterisk.host_path(cfg.asterisk.config_dir)
        before = (target / DIALPLAN_FILE).read_text(), (target / PJSIP_FILE).read_text()
        live, current = await svc.manager.current()
        broken = upsert(current, "route", replace(current.routes[0], destination="extension:399"))
        with pytest.raises(ApplyError, match="no enabled extension 399"):
            await svc.manager.apply(broken, ADMIN, "route to a missing extension")
        tls = upsert(current, "trunk", replace(current.trunks[0], transport="tls"))
        with pytest.raises(ApplyError, match="TLS needs a certificate"):
            await svc.manager.apply(tls, ADMIN, "TLS trunk without certificate")
        assert (await svc.manager.current())[0] == live
        assert ((target / DIALPLAN_FILE).read_text(), (target / PJSIP_FILE).read_text()) == before

        # A good change: the DID goes to the echo line during open hours ...
        moved = upsert(current, "route", replace(current.routes[0], destination="line:echo"))
        second = await svc.manager.apply(moved, ADMIN, "route to echo")
        assert second.reloaded == ("pbx_config.so",)  # only the dialplan changed
        call = await call_did(carrier, cfg)
        await asyncio.sleep(0.3)
        await call.hangup()
        with pytest.raises(Exception, match="no incoming call"):
            await phone.next_incoming(timeout=1)

        # ... and rollback restores the desk phone.
        back = await svc.manager.rollback(ADMIN)
        assert back.note == f"rollback to v{live}"
        call = await call_did(carrier, cfg)
        incoming = await phone.next_incoming(timeout=10)
        await call.hangup()
        await incoming.wait_ended(10)

        actions = {r["action"] for r in await app.db.audit_rows(limit=100_000)}
        assert {"pbx.apply", "pbx.refused"} <= actions
    finally:
        await phone.stop()


# ---- a raw SIP client: REGISTER with digest auth from an address of our choosing
def _register(sock: socket.socket, server: tuple[str, int], user: str, password: str,
              call_id: str, cseq: int, auth: str = "") -> str:  # fmt: skip
    ip, port = sock.getsockname()
    uri = f"sip:{server[0]}:{server[1]}"
    msg = (
        f"REGISTER {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {ip}:{port};rport;branch=z9hG4bK{secrets.token_hex(8)}\r\n"
        f"Max-Forwards: 70\r\nFrom: <sip:{user}@{server[0]}>;tag={secrets.token_hex(4)}\r\n"
        f"To: <sip:{user}@{server[0]}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n"
        f"Contact: <sip:{user}@{ip}:{port}>\r\nExpires: 60\r\n{auth}Content-Length: 0\r\n\r\n"
    )
    sock.sendto(msg.encode(), server)
    try:
        data, _ = sock.recvfrom(4096)
    except TimeoutError:
        return ""
    return data.decode(errors="replace")


def failed_register(server: tuple[str, int], user: str) -> str:
    """One REGISTER with a wrong password; returns the final status line ('' if no answer)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((ATTACKER_IP, 0))
        sock.settimeout(1.0)
        call_id = secrets.token_hex(8)
        first = _register(sock, server, user, "x", call_id, 1)
        if not first.startswith("SIP/2.0 401"):
            return first.split("\r\n", 1)[0]
        challenge = re.search(r"WWW-Authenticate: Digest (.*)\r\n", first)
        assert challenge is not None
        params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge.group(1)))
        uri = f"sip:{server[0]}:{server[1]}"
        ha1 = hashlib.md5(f"{user}:{params['realm']}:wrong-password".encode()).hexdigest()
        ha2 = hashlib.md5(f"REGISTER:{uri}".encode()).hexdigest()
        cnonce = secrets.token_hex(4)
        resp = hashlib.md5(
            f"{ha1}:{params['nonce']}:00000001:{cnonce}:auth:{ha2}".encode()
        ).hexdigest()
        auth = (
            f'Authorization: Digest username="{user}",realm="{params["realm"]}",'
            f'nonce="{params["nonce"]}",uri="{uri}",response="{resp}",algorithm=MD5,'
            f'qop=auth,nc=00000001,cnonce="{cnonce}"'
            + (f',opaque="{params["opaque"]}"' if "opaque" in params else "")
            + "\r\n"
        )
        second = _register(sock, server, user, "x", call_id, 2, auth)
        return second.split("\r\n", 1)[0]


async def test_failed_registrations_get_the_address_blocked(
    app: Appliance, cfg: Config, pbx: tuple[PbxService, Clock]
) -> None:
    svc, _ = pbx
    _, current = await svc.manager.current()
    if not current.extensions:
        await svc.manager.apply(base_config(new_password()), ADMIN, "desk phone for the guard")
    server = ("127.0.0.1", cfg.asterisk.sip_port)
    for _ in range(10):
        status = await asyncio.to_thread(failed_register, server, "301")
        assert status.startswith(("SIP/2.0 401", "SIP/2.0 403")), status
    deadline = time.monotonic() + 5
    while not await app.db.pbx_blocks(active_at=time.time()) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    blocks = await app.db.pbx_blocks(active_at=time.time())
    assert [b["address"] for b in blocks] == [ATTACKER_IP]
    assert blocks[0]["failures"] >= 10
    # Blocked in Asterisk itself: the first REGISTER is now refused before any challenge.
    await asyncio.sleep(0.3)
    status = await asyncio.to_thread(failed_register, server, "301")
    assert status.startswith("SIP/2.0 403") or status == "", status
