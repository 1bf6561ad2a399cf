"""An appliance database on a simulated clock, for the retention tests.

Time starts at T0 (2001), far from the wall clock, so a row a helper forgot to stamp with
simulated time stands out (and `stamp` finds rows still carrying wall-clock times).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from appliance import config
from appliance.privacy import Privacy
from appliance.privacy.identifiers import Identifier
from appliance.privacy.retention import Retention
from appliance.privacy.stream import CIPHER
from appliance.store import AuditEntry, RecordingRow
from appliance.store.reports import ReportRow
from appliance.store.transcripts import IndexedSegment, TranscriptRow
from tests.store.test_db import CDR

T0 = 1_000_000_000.0
WALL = 1.5e9  # anything later was stamped by the wall clock
DAY = 86400.0
LINES = ("reception", "sales")
NUMBERS = ("+46701234561", "+46701234562", "+46701234563")
NAMES = ("Anna Svensson", "Bo Ek", "Cecilia Lund")


def make_cfg(
    tmp: Path,
    days: Mapping[str, int] | None = None,
    lines: Mapping[str, Mapping[str, int]] | None = None,
    interval_h: int = 24,
) -> config.Config:
    lines = lines or {}
    raw: dict[str, Any] = {
        "state_dir": "state",
        "asterisk": {"ami_secret": "unused-in-unit-tests"},
        "lines": [
            {"name": name, "extension": str(100 + i), "retention_days": dict(lines.get(name, {}))}
            for i, name in enumerate(LINES)
        ],
        "privacy": {"retention": {"days": dict(days or {}), "purge_interval_h": interval_h}},
    }
    return config.parse(raw, base_dir=tmp)


@dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now


@dataclass
class Sim:
    privacy: Privacy
    clock: Clock = field(default_factory=Clock)
    call_subjects: dict[str, set[int]] = field(default_factory=dict)
    _n: int = 0

    @property
    def db(self) -> Any:
        return self.privacy.db

    def retention(self) -> Retention:
        return Retention.of(self.privacy, clock=self.clock)

    async def stamp(self, t: float) -> None:
        """Give rows the store stamped with the wall clock the simulated time `t`."""
        for table, col in (("subjects", "created_at"), ("recordings", "created_at")):
            await self.db.db.execute(f"UPDATE {table} SET {col} = ? WHERE {col} > ?", (t, WALL))
        await self.db.db.commit()

    async def call(
        self,
        t: float,
        *,
        line: str | None = "reception",
        number: str = NUMBERS[0],
        name: str = NAMES[0],
    ) -> str:
        self._n += 1
        call_id = f"{int(t)}.{self._n}"
        cdr = replace(
            CDR, call_id=call_id, uniqueid=call_id, calling_number=number, caller_name=name,
            dialed_number="100", line=line, start_at=t, answer_at=t + 2, end_at=t + 60,
            duration_s=60, billable_s=58, disposition="ANSWERED", hangup_cause=16,
            hangup_cause_text="Normal Clearing", channel=f"PJSIP/trunk-{number}-01",
        )  # fmt: skip
        await self.privacy.subjects.add_cdr(cdr)
        await self.stamp(t)
        self.call_subjects[call_id] = set(await self.db.call_subject_ids(call_id))
        return call_id

    async def recording(self, call_id: str, t: float, line: str = "reception") -> int:
        subjects = await self.privacy.subjects.call_key_subjects(call_id)
        path = self.privacy.cfg.recordings_dir / f"{call_id}-{line}-mixed.wav.cvae"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"ciphertext " + call_id.encode())
        row = RecordingRow(
            call_id=call_id, line=line, leg="mixed", path=str(path), format="wav/slin8",
            duration_s=1.0, size_bytes=8044, sha256="0" * 64, cipher=CIPHER,
            key_subjects=",".join(map(str, subjects)), stored_bytes=path.stat().st_size,
        )  # fmt: skip
        await self.db.add_recording(row)
        await self.stamp(t)
        return int((await self.db.recordings(call_id))[0]["id"])

    async def consent(self, call_id: str, t: float, line: str = "reception") -> int:
        cid = await self.db.add_consent(
            call_id=call_id, line=line, decision="given", method="dtmf",
            prompt="This call is recorded. Press 1 to agree.", asked_at=t, decided_at=t + 5,
        )  # fmt: skip
        return int(cid)

    async def transcript(self, call_id: str, t: float, line: str = "reception") -> int:
        keys = ",".join(map(str, await self.privacy.subjects.call_key_subjects(call_id)))
        row = TranscriptRow(
            call_id=call_id, recording_id=None, line=line, leg="mixed", language="en",
            language_prob=0.9, model="whisper", created_at=t, duration_s=5.0,
            text_enc=b"sealed", key_subjects=keys,
        )  # fmt: skip
        seg = IndexedSegment(0.0, 5.0, ["tok" + call_id.replace(".", "x")])
        tid, _ = await self.db.add_transcript(row, [seg], await self._entry(t, "x", "y"))
        await self.stamp(t)
        return int(tid)

    async def report(self, call_id: str, t: float, line: str = "reception") -> int:
        keys = ",".join(map(str, await self.privacy.subjects.call_key_subjects(call_id)))
        row = ReportRow(
            call_id=call_id, line=line, created_at=t, status="ok", attempts=1,
            schema_id="default", model="llm", report_enc=b"sealed", key_subjects=keys,
        )  # fmt: skip
        rid = await self.db.save_report(row, [], await self._entry(t, "report.write", "r"))
        await self.stamp(t)
        return int(rid)

    async def _entry(self, t: float, action: str, obj: str) -> tuple[AuditEntry, Any]:
        seal = await self.privacy.audit.sealer()
        return AuditEntry(t, "alice", "admin", action, obj, "quality review"), seal

    async def audit_row(self, t: float, obj: str = "recording:1") -> int:
        return int(await self.db.audit_append(*await self._entry(t, "recording.play", obj)))

    async def hold_calls(self, call_ids: list[str], t: float, expires: float | None) -> int:
        hid = await self.db.hold_add(
            scope="call", case_ref="", subject_id=None, call_ids=call_ids,
            reason="dispute", owner="legal", created_at=t, expires_at=expires,
            audit=await self._entry(t, "hold.place", "hold"),
        )  # fmt: skip
        return int(hid)

    async def subject_id(self, number: str) -> int | None:
        bi = await self.privacy.keyring.blind_index(Identifier("phone", number))
        row = await self.db.subject_by_index(bi)
        return None if row is None else int(row["id"])

    async def hold_subject(self, number: str, t: float, expires: float | None) -> int | None:
        sid = await self.subject_id(number)
        if sid is None:
            return None
        hid = await self.db.hold_add(
            scope="subject", case_ref="", subject_id=sid, call_ids=[], reason="claim",
            owner="legal", created_at=t, expires_at=expires,
            audit=await self._entry(t, "hold.place", "hold"),
        )  # fmt: skip
        return int(hid)

    async def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        async with self.db.db.execute(sql, args) as cur:
            return [tuple(r) for r in await cur.fetchall()]

    async def audit_texts(self) -> list[str]:
        rows = await self.rows("SELECT actor, role, action, object, purpose, detail FROM audit_log")
        runs = await self.rows("SELECT counts, error FROM retention_runs")
        return [json.dumps(r) for r in rows + runs]
