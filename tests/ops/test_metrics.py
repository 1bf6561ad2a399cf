"""The metrics exposition parsed by prometheus_client's own parser: the families the issue
lists, values from the store, the serving process's snapshot, and no personal data in labels."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from appliance.config import Config
from appliance.ops import metrics
from appliance.ops.metrics import LiveMetrics, TurnTimes
from appliance.privacy import Privacy
from appliance.store import Database
from tests.privacy.conftest import make_cfg
from tests.privacy.rights_fixtures import NAME, NATIONAL, NUMBER, seed


def families(text: bytes) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def no_personal_data(text: bytes) -> None:
    body = text.decode()
    for needle in (NUMBER, NATIONAL, NUMBER[3:], NAME, NAME.split()[1]):
        assert needle not in body, needle


class FakeSource:
    def __init__(self) -> None:
        self.calls = 2
        self.up = True

    def calls_in_progress(self) -> int:
        return self.calls

    def ami_connected(self) -> bool:
        return self.up

    def spool(self) -> tuple[int, int]:
        return 3, 48000

    def models(self) -> Mapping[str, str]:
        return {"stt": "cpu", "llm": "cuda", "tts": "cpu"}

    def queues(self) -> Mapping[str, int]:
        return {"ingest": 1}


async def test_store_figures_parse_and_carry_no_personal_data(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    async with Database(cfg.database) as db:
        privacy = Privacy(cfg, db)
        await seed(privacy, tmp_path)
        from appliance.privacy import Actor
        from appliance.privacy.rights.service import Rights

        clock_now = time.time()
        await Rights(privacy, clock=lambda: clock_now).create(
            "access", NUMBER, Actor("cli:t", "operator")
        )
        await db.alert_fire(kind="disk_filling", key="state", severity="warning", message="x", at=1)
        text = await metrics.scrape(cfg, db)
    f = families(text)
    calls = f["callvault_calls_stored"]
    assert sum(calls.values()) == 3  # the seeded calls
    assert sum(f["callvault_cdrs_total"].values()) == 3
    assert all(dict(k)["line"] in ("reception", "") for k in calls)
    assert f["callvault_rights_requests_open"][(("kind", "access"),)] == 1
    assert 29 <= f["callvault_rights_next_deadline_days"][()] <= 31
    assert f["callvault_alerts_open"][(("severity", "warning"),)] == 1
    assert {dict(k)["disk"] for k in f["callvault_disk_free_bytes"]} >= {"state", "recordings"}
    assert all(0 < v <= 1 for v in f["callvault_disk_free_ratio"].values())
    assert f["callvault_post_call_jobs"][(("stage", "transcribe"),)] >= 0
    assert f["callvault_serve_up"][()] == 0  # no serving process here
    no_personal_data(text)


async def test_serve_snapshot_is_appended_while_fresh(tmp_path: Path) -> None:
    cfg: Config = make_cfg(tmp_path)
    src = FakeSource()
    live = LiveMetrics(src)
    live.observe_turn(TurnTimes(answer_s=0.8, stt_s=0.2, llm_s=0.3, tts_s=0.1))
    live.observe_turn(TurnTimes(answer_s=1.6, stt_s=0.3, llm_s=0.9, tts_s=0.2))
    live.set_trunks({"carrier": True, "backup": False})
    path = metrics.snapshot_path(cfg)
    live.write_snapshot(path)
    async with Database(cfg.database) as db:
        f = families(await metrics.scrape(cfg, db))
        assert f["callvault_serve_up"][()] == 1
        assert f["callvault_calls_in_progress"][()] == 2
        assert f["callvault_ami_connected"][()] == 1
        assert f["callvault_encryption_backlog_files"][()] == 3
        assert f["callvault_recording_spool_bytes"][()] == 48000
        assert f["callvault_models_loaded"][()] == 1
        assert f["callvault_model_device"][(("device", "cuda"), ("role", "llm"))] == 1
        assert f["callvault_queue_depth"][(("queue", "ingest"),)] == 1
        assert f["callvault_ai_turn_latency_seconds_count"][()] == 2
        assert f["callvault_ai_turn_latency_seconds_bucket"][(("le", "1.0"),)] == 1
        assert f["callvault_ai_stage_seconds_sum"][(("stage", "llm"),)] == 1.2
        assert f["callvault_trunk_registered"] == {
            (("trunk", "backup"),): 0, (("trunk", "carrier"),): 1
        }  # fmt: skip
        # A trunk that went away drops its series; values move with the source.
        live.set_trunks({"carrier": False})
        src.calls, src.up = 0, False
        live.write_snapshot(path)
        f = families(await metrics.scrape(cfg, db))
        assert f["callvault_trunk_registered"] == {(("trunk", "carrier"),): 0}
        assert f["callvault_calls_in_progress"][()] == 0
        assert f["callvault_ami_connected"][()] == 0
        # A snapshot older than SNAPSHOT_MAX_AGE_S is a dead serving process, not live figures.
        old = time.time() - metrics.SNAPSHOT_MAX_AGE_S - 5
        os.utime(path, (old, old))
        f = families(await metrics.scrape(cfg, db))
        assert f["callvault_serve_up"][()] == 0
        assert "callvault_calls_in_progress" not in f


async def test_voice_conversation_feeds_the_histograms() -> None:
    from appliance.voice.agent import Conversation, TurnTiming

    live = LiveMetrics(FakeSource())
    convo = Conversation(call_id="1.1", line="reception")
    convo.timings.append(TurnTiming(300, 250, 400, 120, 900))
    live.observe_conversation(convo)
    f = families(live.render())
    assert f["callvault_ai_turn_latency_seconds_sum"][()] == 0.9
    assert f["callvault_ai_stage_seconds_sum"][(("stage", "stt"),)] == 0.25


async def test_snapshot_task_writes_and_removes(tmp_path: Path) -> None:
    import asyncio
    import contextlib

    path = tmp_path / "run" / metrics.SNAPSHOT_NAME
    task = asyncio.create_task(LiveMetrics(FakeSource()).run(path, interval_s=0.05))
    for _ in range(100):
        if path.exists():
            break
        await asyncio.sleep(0.02)
    assert b"callvault_calls_in_progress 2.0" in path.read_bytes()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert not path.exists()


async def test_call_counts_follow_the_calls_table(tmp_path: Path) -> None:
    """The trigger-kept counts equal a full GROUP BY after inserts, a disposition settled by a
    later CDR, and deletes; the CDR counter never goes down."""
    from dataclasses import replace

    from tests.store.test_db import CDR

    async def truth(db: Database) -> list[tuple[str, str, int]]:
        async with db.db.execute(
            "SELECT COALESCE(line, ''), disposition, COUNT(*) FROM calls"
            " GROUP BY 1, 2 ORDER BY 1, 2"
        ) as cur:
            return [(str(a), str(b), int(c)) for a, b, c in await cur.fetchall()]

    async def stored(db: Database) -> list[tuple[str, str, int]]:
        return [r for r in await db.ops_calls_by_line() if r[2]]

    async with Database(tmp_path / "db.sqlite") as db:
        await db.add_cdr(CDR)  # NO ANSWER on reception
        await db.add_cdr(replace(CDR, call_id="2.1", uniqueid="2.1", line=None))
        assert await stored(db) == await truth(db) == [
            ("", "NO ANSWER", 1), ("reception", "NO ANSWER", 1)
        ]  # fmt: skip
        # The call's second CDR (a transfer leg) was answered: the call moves.
        await db.add_cdr(
            replace(CDR, uniqueid="100.2", sequence=1, disposition="ANSWERED", answer_at=1001.0)
        )
        assert await stored(db) == await truth(db) == [
            ("", "NO ANSWER", 1), ("reception", "ANSWERED", 1)
        ]  # fmt: skip
        await db.db.execute("DELETE FROM cdrs")
        await db.db.execute("DELETE FROM calls WHERE id = '2.1'")
        await db.db.commit()
        assert await stored(db) == await truth(db) == [("reception", "ANSWERED", 1)]
        assert sorted(await db.ops_cdrs_by_line()) == [
            ("", "NO ANSWER", 1), ("reception", "ANSWERED", 1), ("reception", "NO ANSWER", 1)
        ]  # fmt: skip
