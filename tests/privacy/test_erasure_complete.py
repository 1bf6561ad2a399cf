"""Issue 5's erasure completeness test, whole: one subject seeded across calls, CDRs, an
encrypted recording, consent, a transcript (sealed, keyed-token index), an AI report (sealed,
naming her), an access export, the application log and a backup made before the erasure.
After the erasure the database file (VACUUMed), the files tree, the FTS index, the log and a
restored backup hold none of her number, name or audio fingerprint; with a legal hold on her
call the same request keeps (anonymised) only what the hold covers and says why.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from appliance.privacy import Actor, Privacy, backup
from appliance.privacy.rights import Rights, Status
from appliance.voice.report import ReportWriter
from appliance.voice.transcripts import Segment, Transcript, TranscriptVault, Word
from tests.privacy.rights_fixtures import NAME, NUMBER, OP, done, seed
from tests.privacy.test_rights_data import env, logfile, scan, vacuum  # noqa: F401 - fixtures
from tests.voice.test_report import GOOD, FakeModel

SAID = f"Hi, this is {NAME}, I would like an appointment on Tuesday. My number is 070 123 45 67."


async def _ai_data(privacy: Privacy, call_id: str) -> tuple[int, int]:
    """Her call's transcript and report, made through the real vault and writer."""
    subjects = await privacy.subjects.call_key_subjects(call_id)
    words = tuple(Word(i * 0.4, i * 0.4 + 0.3, w, 0.9) for i, w in enumerate(SAID.split()))
    t = Transcript(
        call_id=call_id, line="reception", leg="caller", language="en", language_prob=0.99,
        model="whisper-base", duration_s=8.0, segments=(Segment(0.0, 8.0, SAID, words),),
    )  # fmt: skip
    vault = TranscriptVault(privacy.db, privacy)
    tid, _ = await vault.store(
        t, recording_id=None, subject_ids=subjects, actor=Actor.system("transcriber")
    )
    report = {**GOOD, "caller_name": NAME, "contact": {"phone": "070 123 45 67", "email": None}}
    writer = ReportWriter(privacy.cfg, privacy.db, privacy, lambda: FakeModel([json.dumps(report)]))
    result = await writer.report(call_id)
    return tid, result.report_id


async def test_erasure_reaches_transcripts_reports_index_logs_and_backups(
    env: tuple[Privacy, Rights],  # noqa: F811 - the fixture
    tmp_path: Path,
    logfile: Path,  # noqa: F811 - the fixture
) -> None:
    privacy, rights = env
    cfg = privacy.cfg
    seeded = await seed(privacy, tmp_path)
    inbound = seeded.calls[0]
    tid, report_id = await _ai_data(privacy, inbound)
    vault = TranscriptVault(privacy.db, privacy)
    hits = await vault.search("appointment tuesday", actor=OP, purpose="test")
    assert [m.call_id for m in hits] == [inbound]
    assert await privacy.db.transcript_index_rows(tid) > 0
    await done(rights, "access")  # an export holding her audio, transcript and report
    created = await backup.create(cfg)
    assert created.report.ok
    assert scan([cfg.state_dir]), "the seed must put her data where the scan looks"

    rid = await done(rights, "erasure")
    req = await rights.get(rid)
    assert req.status is Status.COMPLETE and req.response["outcome"] == "erased"
    deleted = req.response["deleted"]
    assert deleted["calls"] == 2 and deleted["transcripts"] == 1 and deleted["reports"] == 1
    assert await privacy.db.transcript_index_rows(tid) == 0
    assert await vault.search("appointment tuesday", actor=OP, purpose="test") == []
    assert await privacy.db.reports_by_ids([report_id]) == []

    await privacy.db.close()
    vacuum(cfg.database)
    assert scan([cfg.state_dir, tmp_path / "spool", logfile]) == []
    con = sqlite3.connect(cfg.database)
    assert con.execute("SELECT id FROM calls").fetchall() == [(seeded.other_call,)]
    assert con.execute("SELECT COUNT(*) FROM transcripts").fetchone() == (0,)
    assert con.execute("SELECT COUNT(*) FROM call_reports").fetchone() == (0,)
    con.close()

    # The backup made before the erasure: restored, she is erased again.
    restored = await backup.restore(cfg, created.archive)
    assert restored.reapplied == 1
    vacuum(cfg.database)
    assert scan([cfg.database, cfg.recordings_dir, cfg.state_dir / "keys", cfg.backup.dir]) == []
    con = sqlite3.connect(cfg.database)
    assert con.execute("SELECT COUNT(*) FROM transcripts").fetchone() == (0,)
    assert con.execute("SELECT COUNT(*) FROM call_reports").fetchone() == (0,)
    con.close()
    await privacy.db.open()
    assert await privacy.subjects.items(privacy.subjects.parse(NUMBER)) == []


async def test_a_legal_hold_keeps_the_held_calls_ai_data_and_says_why(
    env: tuple[Privacy, Rights],  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    privacy, rights = env
    seeded = await seed(privacy, tmp_path)
    inbound = seeded.calls[0]
    tid, report_id = await _ai_data(privacy, inbound)
    await rights.holds.on_calls([inbound], OP, reason="invoice dispute 17", owner="legal")
    rid = await done(rights, "erasure")
    req = await rights.get(rid)
    assert req.status is Status.COMPLETE
    kept = req.response["kept_under_legal_hold"]
    assert kept["transcripts"] == 1 and kept["reports"] == 1
    assert "invoice dispute 17" in json.dumps(req.response)
    assert [r["id"] for r in await privacy.db.reports_by_ids([report_id])] == [report_id]
    assert await privacy.db.transcript_index_rows(tid) > 0
