"""Transport-level hardening: TLS floor on the admin listener, AMI reachable on loopback only,
digest auth on the agent's PJSIP endpoint. (The agent's own refusal of INVITEs that bypass
Asterisk is tested against the real sandbox: tests/security/test_sip_attacks.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

import pytest

from appliance import config
from appliance.admin.listener import uvicorn_config
from appliance.errors import ConfigError
from appliance.telephony import render
from tests.privacy.conftest import RAW, make_cfg


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "asterisk.lan", ""])
def test_ami_cannot_be_configured_off_loopback(tmp_path: Path, host: str) -> None:
    raw = {**RAW, "asterisk": {**RAW["asterisk"], "ami_host": host}}  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=r"asterisk\.ami_host.*not a loopback address"):
        config.parse(raw, base_dir=tmp_path)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.53"])
def test_ami_on_loopback_is_accepted(tmp_path: Path, host: str) -> None:
    raw = {**RAW, "asterisk": {**RAW["asterisk"], "ami_host": host}}  # type: ignore[dict-item]
    assert config.parse(raw, base_dir=tmp_path).asterisk.ami_host == host


def test_rendered_manager_conf_binds_and_permits_loopback_only(tmp_path: Path) -> None:
    files = render.render(make_cfg(tmp_path))
    manager = files["manager.conf"]
    assert "bindaddr = 127.0.0.1" in manager
    assert "deny = 0.0.0.0/0.0.0.0" in manager
    permits = [ln for ln in manager.splitlines() if ln.startswith("permit")]
    assert permits == ["permit = 127.0.0.1/255.255.255.255"]


async def _handshake(port: int, version: ssl.TLSVersion) -> str:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with contextlib.suppress(ssl.SSLError, ValueError):
        ctx.set_ciphers("ALL:@SECLEVEL=0")  # let the client offer old protocols at all
    ctx.minimum_version = version
    ctx.maximum_version = version
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    negotiated = writer.get_extra_info("ssl_object").version()
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return str(negotiated)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion:DeprecationWarning")
async def test_admin_listener_refuses_tls_below_1_2(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    uc = uvicorn_config(cfg)
    uc.load()
    server_ctx = uc.ssl
    assert server_ctx is not None
    assert server_ctx.minimum_version >= ssl.TLSVersion.TLSv1_2

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        assert await _handshake(port, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
        assert await _handshake(port, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
        for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await _handshake(port, old)
    finally:
        server.close()
        await server.wait_closed()


def test_agent_endpoint_needs_digest_auth(tmp_path: Path) -> None:
    pjsip = render.render(make_cfg(tmp_path))["pjsip.conf"]
    agent = pjsip.split("[agent]", 1)[1].split("\n\n", 1)[0]
    assert "auth = agent-auth" in agent
    assert "type = anonymous" not in pjsip  # no endpoint answers unidentified callers


@pytest.mark.parametrize(
    ("source", "trusted"),
    [
        ("127.0.0.1:5060", True),
        ("127.0.0.1:5099", False),  # another process on the box
        ("10.1.2.3:5060", False),  # a LAN host talking to the agent directly
        ("[::1]:5060", False),
        ("127.0.0.10:5060", False),
        ("garbage", False),
    ],
)
def test_registered_agent_takes_invites_only_from_its_registrar(source: str, trusted: bool) -> None:
    from appliance.telephony.sip.account import SipAccount

    acc = SipAccount(
        None,  # type: ignore[arg-type]  # the runtime is not touched by the check
        username="agent",
        registrar_host="127.0.0.1",
        registrar_port=5060,
    )
    assert acc.pj_trusts(source) is trusted
    # A local peer (no registrar, the unit tests' loopback agent) is not restricted.
    assert SipAccount(None, username="agent").pj_trusts(source)  # type: ignore[arg-type]
