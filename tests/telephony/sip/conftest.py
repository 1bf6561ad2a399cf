"""One PjRuntime for the whole session (pjsua2 allows one endpoint per process)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from appliance.telephony.sip import PjRuntime, SipTransport


@dataclass(frozen=True)
class Loopback:
    runtime: PjRuntime
    agent_transport: SipTransport
    phone_transport: SipTransport


@pytest.fixture(scope="session")
def pj_runtime() -> Iterator[PjRuntime]:
    runtime = PjRuntime(bind_host="127.0.0.1", bind_port=0, max_calls=32)
    runtime.start()
    yield runtime
    runtime.stop()


@pytest.fixture(scope="session")
def loopback(pj_runtime: PjRuntime) -> Loopback:
    # pjsua has a small fixed transport table: bind the two peers' transports once.
    agent_tp = pj_runtime.submit(pj_runtime.pj_create_transport, "127.0.0.1", 0).result(5)
    phone_tp = pj_runtime.submit(pj_runtime.pj_create_transport, "127.0.0.1", 0).result(5)
    return Loopback(pj_runtime, agent_tp, phone_tp)


@pytest.fixture
async def no_leaked_calls(loopback: Loopback) -> AsyncIterator[None]:
    yield
    leaked = await loopback.runtime.run(loopback.runtime.pj_live_call_count)
    assert leaked == 0, f"{leaked} pj call objects still alive after the test"
