from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from appliance import config
from appliance.pbx.apply import PbxManager, new_password
from appliance.pbx.model import Extension, InboundRoute, OutboundRule, PbxConfig, Trunk
from appliance.privacy import Privacy
from appliance.store import Database


def make_cfg(tmp_path: Path) -> config.Config:
    raw = {
        "state_dir": "state",
        "asterisk": {"root": str(tmp_path / "root"), "sandbox": True, "ami_secret": "unused"},
        "lines": [
            {"name": "reception", "extension": "100"},
            {"name": "echo", "extension": "900", "kind": "echo"},
        ],
        "extensions": [{"number": "201", "name": "Front desk"}],
    }
    return config.parse(raw, base_dir=tmp_path)


@pytest.fixture
def cfg(tmp_path: Path) -> config.Config:
    c = make_cfg(tmp_path)
    c.asterisk.host_path(c.asterisk.config_dir).mkdir(parents=True)
    return c


def sample(password: str | None = None) -> PbxConfig:
    return PbxConfig(
        trunks=(
            Trunk(name="carrier", host="192.0.2.10", dids=("4631100200",), caller_id="4631100299"),
            Trunk(name="backup", host="sip.example.net", auth="registration",
                  username="acct1", password="trunk-secret-1", transport="tcp"),
        ),
        extensions=(Extension(number="301", name="Sales", password=password or new_password(),
                              voicemail=True, takeover_lines=("reception",)),),
        routes=(InboundRoute(did="4631100200", destination="extension:301",
                             closed_destination="line:reception",
                             hours=("mon-fri 08:00-17:00",), holidays=("2026-12-24",),
                             timezone="Europe/Stockholm"),),
        outbound=(OutboundRule(name="national", patterns=("_0X.",), trunk="carrier",
                               members=("301",), caller_id="4631100250"),),
    )  # fmt: skip


@pytest_asyncio.fixture
async def manager(cfg: config.Config) -> AsyncIterator[PbxManager]:
    async with Database(cfg.database) as db:
        yield PbxManager(cfg, db, Privacy(cfg, db))
