"""The do-not-call list: numbers the appliance never dials.

Entries are kept by blind index (lookup at every originate) with the number sealed under the
key ring's 'values' key (for listing). They are not subject data: an opt-out must outlive the
erasure of everything else about the person. Every change is audited in the same transaction.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.errors import CallvaultError
from appliance.privacy.audit import Actor, AuditLog
from appliance.privacy.identifiers import Identifier, IdentifierError
from appliance.privacy.keyring import Keyring
from appliance.privacy.subjects import Subjects
from appliance.store import Database, DncEntry

MAX_TEXT = 200


class DncError(CallvaultError):
    pass


@dataclass(frozen=True)
class DncView:
    id: int
    number: str
    kind: str
    source: str
    reason: str
    added_at: float
    added_by: str


@dataclass
class ImportReport:
    added: int = 0
    unchanged: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)
    """(line number in the file, what is wrong)"""


def _aad(blind_index: bytes) -> bytes:
    return b"callvault dnc|" + blind_index


def _text(value: str, what: str) -> str:
    value = value.strip()
    if len(value) > MAX_TEXT:
        raise DncError(f"{what} is longer than {MAX_TEXT} characters")
    return value


class DncList:
    def __init__(self, db: Database, keyring: Keyring, subjects: Subjects, audit: AuditLog) -> None:
        self.db = db
        self.keyring = keyring
        self.subjects = subjects
        self.audit = audit

    async def _entry(self, ident: Identifier, source: str, reason: str, actor: Actor) -> DncEntry:
        bi = await self.keyring.blind_index(ident)
        return DncEntry(
            blind_index=bi,
            kind=ident.kind,
            number_enc=await self.keyring.seal_value(ident.value, _aad(bi)),
            source=_text(source, "source"),
            reason=_text(reason, "reason"),
            added_at=time.time(),
            added_by=actor.name,
        )

    async def find(self, ident: Identifier) -> dict[str, Any] | None:
        return await self.db.dnc_get(await self.keyring.blind_index(ident))

    async def add(self, raw: str, *, source: str, reason: str, actor: Actor) -> bool:
        """True if added, False if the number was already listed (nothing changes then)."""
        entry = await self._entry(self.subjects.parse(raw), source, reason, actor)
        audit = await self.audit.entry(actor, "dnc.add", "dnc", "do-not-call", f"source={source}")
        return (await self.db.dnc_add([entry], audit))[0]

    async def remove(self, raw: str, *, actor: Actor) -> bool:
        """True if removed, False if the number was not listed."""
        bi = await self.keyring.blind_index(self.subjects.parse(raw))
        row = await self.db.dnc_get(bi)
        if row is None:
            return False
        audit = await self.audit.entry(actor, "dnc.remove", f"dnc:{row['id']}", "do-not-call")
        return await self.db.dnc_remove(bi, audit)

    async def entries(self) -> list[DncView]:
        out = []
        for r in await self.db.dnc_rows():
            bi = bytes(r["blind_index"])
            number = await self.keyring.open_value(
                bytes(r["number_enc"]), _aad(bi), f"dnc entry {r['id']}"
            )
            out.append(
                DncView(
                    id=int(r["id"]),
                    number=number,
                    kind=str(r["kind"]),
                    source=str(r["source"]),
                    reason=str(r["reason"]),
                    added_at=float(r["added_at"]),
                    added_by=str(r["added_by"]),
                )
            )
        return out

    async def import_csv(self, path: Path, *, source: str, actor: Actor) -> ImportReport:
        """Import a CSV with a `number` column (optional `source`, `reason`).

        Good rows are added in one transaction, bad rows are reported by line number and change
        nothing; numbers already listed stay as they were, so a re-import changes nothing.
        A file that cannot be read as such a CSV at all is refused whole.
        """
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise DncError(f"cannot read {path}: {exc.strerror or exc}") from None
        return await self.import_bytes(data, str(path), source=source, actor=actor)

    async def import_bytes(
        self, data: bytes, name: str, *, source: str, actor: Actor
    ) -> ImportReport:
        """`import_csv` for an upload held in memory (numbers never land in a temp file)."""
        path = name
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DncError(f"{path} is not UTF-8 text (byte {exc.start})") from None
        reader = csv.DictReader(io.StringIO(text, newline=""))
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        if "number" not in columns:
            raise DncError(f"{path}: the first line must be a header with a 'number' column")
        reader.fieldnames = columns
        report = ImportReport()
        entries: list[DncEntry] = []
        seen: set[bytes] = set()
        for row in reader:
            line = reader.line_num
            if None in row:
                report.bad.append((line, "more fields than the header has"))
                continue
            raw = (row.get("number") or "").strip()
            if not raw and not any((v or "").strip() for v in row.values()):
                continue  # blank line
            try:
                ident = self.subjects.parse(raw)
                entry = await self._entry(
                    ident, row.get("source") or source, row.get("reason") or "", actor
                )
            except (IdentifierError, DncError) as exc:
                report.bad.append((line, str(exc)))
                continue
            if entry.blind_index in seen:
                report.unchanged += 1
                continue
            seen.add(entry.blind_index)
            entries.append(entry)
        if entries:
            digest = hashlib.sha256(data).hexdigest()[:16]
            audit = await self.audit.entry(
                actor,
                "dnc.import",
                "dnc",
                "do-not-call",
                f"file_sha256={digest} candidates={len(entries)} bad={len(report.bad)}",
            )
            added = await self.db.dnc_add(entries, audit)
            report.added = sum(added)
            report.unchanged += len(added) - report.added
        return report
