"""PjRuntime lifecycle and registration failures."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from appliance.telephony.sip import PjRuntime, SipAccount, SipError

if TYPE_CHECKING:
    from conftest import Loopback

REPO = Path(__file__).resolve().parents[3]


def _closed_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def test_second_runtime_is_refused(pj_runtime: PjRuntime) -> None:
    with pytest.raises(SipError, match="already running"):
        PjRuntime().start()
    assert pj_runtime.running


async def test_submit_runs_on_the_pj_thread_and_carries_errors(pj_runtime: PjRuntime) -> None:
    assert await pj_runtime.run(pj_runtime.in_pj_thread)
    assert not pj_runtime.in_pj_thread()

    def boom() -> None:
        raise ValueError("from the pj thread")

    with pytest.raises(ValueError, match="from the pj thread"):
        await pj_runtime.run(boom)


async def test_registration_to_a_closed_port_is_a_clear_error(loopback: Loopback) -> None:
    port = _closed_udp_port()
    account = SipAccount(
        loopback.runtime,
        username="agent",
        password="secret",
        registrar_host="127.0.0.1",
        registrar_port=port,
        transport=loopback.phone_transport,
        unreg_wait_msec=200,
    )
    await account.start()
    try:
        with pytest.raises(SipError) as info:
            await account.wait_registered(timeout=1.0)
    finally:
        started = time.monotonic()
        await account.close()
        assert time.monotonic() - started < 3.0
    message = str(info.value)
    assert f"agent@127.0.0.1:{port}" in message
    assert "did not succeed within 1 s" in message
    assert not account.registered


class _Refusing401(asyncio.DatagramProtocol):
    """A registrar that challenges every REGISTER and never accepts the answer."""

    accept = False

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.requests = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        text = data.decode()
        if not text.startswith("REGISTER"):
            return
        self.requests += 1
        copied = [
            line
            for line in text.split("\r\n")
            if line.split(":", 1)[0].lower() in {"via", "from", "to", "call-id", "cseq"}
        ]
        if self.accept:
            contact = next(
                line for line in text.split("\r\n") if line.lower().startswith("contact:")
            )
            lines = ["SIP/2.0 200 OK", *copied, f"{contact};expires=300"]
        else:
            lines = [
                "SIP/2.0 401 Unauthorized",
                *copied,
                f'WWW-Authenticate: Digest realm="callvault", nonce="n{self.requests}", '
                "algorithm=MD5",
            ]
        reply = "\r\n".join([*lines, "Content-Length: 0", "", ""])
        assert self.transport is not None
        self.transport.sendto(reply.encode(), addr)


async def test_wrong_password_names_the_account(loopback: Loopback) -> None:
    loop = asyncio.get_running_loop()
    transport, registrar = await loop.create_datagram_endpoint(
        _Refusing401, local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    account = SipAccount(
        loopback.runtime,
        username="agent",
        password="wrong",
        registrar_host="127.0.0.1",
        registrar_port=port,
        transport=loopback.phone_transport,
        unreg_wait_msec=200,
    )
    await account.start()
    try:
        with pytest.raises(SipError, match=rf"wrong password for agent@127.0.0.1:{port}: 401"):
            await account.wait_registered(timeout=5.0)
        assert registrar.requests >= 2  # challenged, answered with credentials, refused
        assert account.last_registration_status is not None
        assert account.last_registration_status[0] == 401
    finally:
        await account.close()
        transport.close()


class _Accepting(_Refusing401):
    accept = True


async def test_registration_success_and_number_dialing_target(loopback: Loopback) -> None:
    loop = asyncio.get_running_loop()
    transport, registrar = await loop.create_datagram_endpoint(
        _Accepting, local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    account = SipAccount(
        loopback.runtime,
        username="1001",
        password="pw",
        registrar_host="127.0.0.1",
        registrar_port=port,
        transport=loopback.phone_transport,
    )
    await account.start()
    try:
        await account.wait_registered(timeout=5.0)
        assert account.registered
        assert account.last_registration_status == (200, "OK")
        assert account.target_uri("2002") == f"sip:2002@127.0.0.1:{port}"
    finally:
        await account.close()
        transport.close()
    assert registrar.requests >= 2  # register + unregister


async def test_dialing_a_number_needs_a_registrar(loopback: Loopback) -> None:
    account = SipAccount(loopback.runtime, username="x", transport=loopback.phone_transport)
    with pytest.raises(SipError, match="no registrar"):
        await account.dial("1001")
    assert account.target_uri("sip:a@b") == "sip:a@b"


_LIFECYCLE = textwrap.dedent(
    """
    import asyncio, logging, sys, threading
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    from appliance.telephony.audio import tone
    from appliance.telephony.sip import SipAgent, SipPhone

    async def hold(call):
        call.play(tone(440, 5.0))
        await call.wait_ended()

    async def main():
        agent = SipAgent(handler=hold)  # owns the process's runtime
        await agent.start()
        phone = SipPhone(username="1001", runtime=agent.runtime)
        await phone.start()
        calls = [await phone.dial(agent.uri, wait_answer=5) for _ in range(2)]
        await asyncio.sleep(0.5)
        assert len(calls[0].received_pcm()) > 0
        # Stop while calls are up and audio flows: the runtime must hang up and clean up.
        await agent.stop()
        for call in calls:
            end = await call.wait_ended(5)
            print("ended", end.status_code, flush=True)
        await phone.stop()

    asyncio.run(main())
    others = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    print("threads", others, flush=True)
    """
)


@pytest.fixture
def lifecycle_script(tmp_path: Path) -> Iterator[Path]:
    script = tmp_path / "lifecycle.py"
    script.write_text(_LIFECYCLE)
    yield script


def test_stop_with_live_calls_is_clean(lifecycle_script: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(lifecycle_script)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert "Assertion" not in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout.count("ended ") == 2
    assert "threads []" in proc.stdout
    assert elapsed < 20
