from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from appliance import config
from appliance.privacy import Privacy
from appliance.store import Database

RAW = {
    "state_dir": "state",
    "asterisk": {"ami_secret": "unused-in-unit-tests"},
    "lines": [
        {"name": "sales", "extension": "300", "erase_on_opt_out": True},
        {"name": "keep", "extension": "301"},
    ],
    "extensions": [{"number": "201", "name": "Desk"}],
}


def make_cfg(tmp_path: Path) -> config.Config:
    return config.parse(dict(RAW), base_dir=tmp_path)


@pytest_asyncio.fixture
async def privacy(tmp_path: Path) -> AsyncIterator[Privacy]:
    cfg = make_cfg(tmp_path)
    async with Database(cfg.database) as db:
        yield Privacy(cfg, db)
