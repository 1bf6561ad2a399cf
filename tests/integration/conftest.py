"""Fixtures for tests through the real Asterisk sandbox, real pjsua2 phones and SIPp.

Nothing here skips: under CI a missing component (sandbox, sipp) is a failure with a message
saying what is missing. The whole integration session shares one event loop, one pjsua2
runtime (one per process is all pjsua2 allows), one Asterisk and one running appliance.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tomllib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from appliance import config
from appliance.config import Config
from appliance.server import Appliance
from appliance.store import Database
from appliance.telephony import render
from appliance.telephony.greeter import GreetAndRecord, Heard
from appliance.telephony.sip import PjRuntime, SipPhone

REPO = Path(__file__).resolve().parents[2]
SANDBOX = REPO / "asterisk" / "sandbox"
DEV_CONFIG = REPO / "config" / "callvault.dev.toml"
SESSION = {"asterisk_up": False}
"""Whether this session's Asterisk (root namespace) was started: test_egress.py runs its own
from the same rootfs in a network namespace, and must come before it."""
# Test files that must run before the session's fixtures start anything, in this order.
FIRST = {"test_egress.py": 0, "test_serve.py": 1}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
    # The egress test runs Asterisk (same rootfs) in a namespace of its own: before the
    # session's Asterisk starts. `callvault serve` registers as PJSIP endpoint `agent` too: run
    # it before the session's in-process appliance registers (Asterisk keeps one contact).
    items.sort(key=lambda item: FIRST.get(Path(str(item.fspath)).name, len(FIRST)))


def sandbox(cfg: Config, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"CALLVAULT_ROOTFS": str(cfg.asterisk.root), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    return subprocess.run(
        [str(SANDBOX), *args], env=env, check=check, capture_output=True, text=True, timeout=120
    )


def make_config(state_dir: Path, **asterisk: object) -> Config:
    raw = tomllib.loads(DEV_CONFIG.read_text())
    raw["state_dir"] = str(state_dir)
    raw["asterisk"].update(asterisk)
    return config.parse(raw, base_dir=DEV_CONFIG.parent, source=DEV_CONFIG)


@pytest.fixture(scope="session")
def cfg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    c = make_config(tmp_path_factory.mktemp("state"))
    root = c.asterisk.root
    if not (root / ".callvault-ready").exists():
        pytest.fail(f"Asterisk sandbox rootfs missing at {root}: run `make install` first")
    render.write(c, render.render(c))
    sandbox(c, "down", check=False)
    # A clean slate: the CDR file and the spool belong to this session.
    cdr_log = c.asterisk.host_path(c.asterisk.cdr_log)
    if cdr_log.exists():
        cdr_log.write_text("")
    spool = c.asterisk.host_path(c.asterisk.spool_dir)
    for stale in spool.glob("cv-*.wav"):
        stale.unlink()
    up = sandbox(c, "up", check=False)
    if up.returncode != 0:
        pytest.fail(f"Asterisk sandbox did not start:\n{up.stderr}")
    SESSION["asterisk_up"] = True
    yield c
    sandbox(c, "down", check=False)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def runtime() -> AsyncIterator[PjRuntime]:
    async with PjRuntime(bind_host="127.0.0.1", bind_port=0) as rt:
        yield rt


class Heards:
    """What the agent heard, per call id, as the greeter reports it."""

    def __init__(self) -> None:
        self.items: dict[str, Heard] = {}
        self.changed = asyncio.Event()

    def add(self, heard: Heard) -> None:
        self.items[heard.call_id] = heard
        self.changed.set()

    def mark(self) -> set[str]:
        return set(self.items)

    async def next(self, mark: set[str], line: str, timeout: float = 10.0) -> Heard:
        """The first call the agent finished on `line` since `mark()`."""
        async with asyncio.timeout(timeout):
            while True:
                new = [h for cid, h in self.items.items() if cid not in mark and h.line == line]
                if new:
                    return new[0]
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture(scope="session")
def heards() -> Heards:
    return Heards()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def app(cfg: Config, runtime: PjRuntime, heards: Heards) -> AsyncIterator[Appliance]:
    async with Database(cfg.database) as db:
        appliance = Appliance(
            cfg, db, runtime=runtime, handler=GreetAndRecord(cfg, listen_s=30, on_heard=heards.add)
        )
        await appliance.start()
        yield appliance
        await appliance.stop()


async def _phone(cfg: Config, runtime: PjRuntime, number: str) -> SipPhone:
    ext = next(e for e in cfg.extensions if e.number == number)
    phone = SipPhone(
        username=ext.number,
        password=cfg.extension_password(ext),
        registrar_host="127.0.0.1",
        registrar_port=cfg.asterisk.sip_port,
        display_name=ext.name,
        runtime=runtime,
    )
    await phone.start()
    return phone


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def phone201(app: Appliance, cfg: Config, runtime: PjRuntime) -> AsyncIterator[SipPhone]:
    phone = await _phone(cfg, runtime, "201")
    yield phone
    await phone.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def phone202(app: Appliance, cfg: Config, runtime: PjRuntime) -> AsyncIterator[SipPhone]:
    phone = await _phone(cfg, runtime, "202")
    yield phone
    await phone.stop()


@pytest.fixture(scope="session")
def sipp() -> str:
    path = shutil.which("sipp")
    if path is None:
        pytest.fail("sipp is missing: apt-get install sip-tester (make install does)")
    return path
