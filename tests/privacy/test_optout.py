"""A caller's opt-out from the post-call report: the number goes on the do-not-call list; on a
line with `erase_on_opt_out` the caller's data goes too, and only the blocking entry stays."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from appliance.privacy import Privacy
from appliance.privacy.optout import caller_opted_out
from appliance.privacy.rights import Rights
from appliance.store import Database
from appliance.voice.postcall import PostCallPipeline
from tests.privacy.conftest import RAW
from tests.store.test_db import CDR

NUMBER = "0701234567"
E164 = "+46701234567"


@dataclass
class Reported:
    report: dict[str, Any]


class OptOutReporter:
    async def report(self, call_id: str) -> object:
        return Reported({"opt_out": True})


def cfg_with(tmp_path: Path, erase: bool) -> Any:
    from appliance import config

    lines = [{"name": "reception", "extension": "100", "erase_on_opt_out": erase}]
    return config.parse({**RAW, "lines": lines}, base_dir=tmp_path)


async def _call(privacy: Privacy, call_id: str) -> None:
    await privacy.subjects.add_cdr(
        replace(CDR, call_id=call_id, uniqueid=call_id, calling_number=NUMBER, line="reception")
    )


async def test_opt_out_lists_the_number_and_keeps_the_data(tmp_path: Path) -> None:
    cfg = cfg_with(tmp_path, erase=False)
    async with Database(cfg.database) as db:
        privacy = Privacy(cfg, db)
        await _call(privacy, "1700000001.1")
        result = await caller_opted_out(privacy, "1700000001.1")
        assert result.objection_id is not None and result.erasure_id is None
        assert await privacy.dnc.find(privacy.subjects.parse(E164)) is not None
        assert await db.call("1700000001.1") is not None


async def test_opt_out_on_an_erasing_line_keeps_only_the_block(tmp_path: Path) -> None:
    cfg = cfg_with(tmp_path, erase=True)
    async with Database(cfg.database) as db:
        privacy = Privacy(cfg, db)
        await _call(privacy, "1700000001.1")
        await _call(privacy, "1700000002.1")
        # The pipeline's report step said opt_out: the job finishes, then the opt-out runs.
        await db.post_call_enqueue("1700000002.1", 0.0)
        pipeline = PostCallPipeline(
            cfg,
            db,
            privacy,
            recordings=None,
            reporter=OptOutReporter(),  # type: ignore[arg-type]
        )
        await db.post_call_advance("1700000002.1", 1, "report", 0.0)
        job = await db.post_call_job("1700000002.1")
        assert job is not None
        await pipeline.run_job(job)
        assert await db.call("1700000001.1") is None and await db.call("1700000002.1") is None
        assert await privacy.dnc.find(privacy.subjects.parse(E164)) is not None
        assert await privacy.subjects.items(privacy.subjects.parse(E164)) == []
        kinds = [r.kind.value for r in await Rights(privacy).all()]
        assert kinds == ["objection", "erasure"]
    con = sqlite3.connect(cfg.database)
    assert con.execute("SELECT COUNT(*) FROM dnc").fetchone() == (1,)
    con.close()


async def test_an_internal_caller_is_not_listed(tmp_path: Path) -> None:
    cfg = cfg_with(tmp_path, erase=True)
    async with Database(cfg.database) as db:
        privacy = Privacy(cfg, db)
        await privacy.subjects.add_cdr(
            replace(CDR, call_id="1700000003.1", uniqueid="1700000003.1", calling_number="201")
        )
        result = await caller_opted_out(privacy, "1700000003.1")
        assert result.objection_id is None
        assert await privacy.dnc.entries() == []
        assert await db.call("1700000003.1") is not None
