"""SQL for outbound lead campaigns (issue 8): lead lists, imports, campaigns, dial attempts.

An attempt is claimed (its row written, the lead moved to 'dialling') in one transaction
before anything is dialled, and only if the lead is still due: two dialler passes, or a
dialler restarted mid-pass, can never both dial the same lead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from appliance.store.base import AuditEntry, AuditSeal, StoreBase, StoreError

if TYPE_CHECKING:
    from appliance.store.db import SubjectDraft

Audit = tuple[AuditEntry, AuditSeal]
FINAL_LEAD_STATES = ("done", "blocked", "exhausted")


@dataclass(frozen=True)
class LeadRow:
    blind_index: bytes
    subject_id: int
    country: str
    timezone: str
    basis: str
    fields_enc: bytes
    source_line: int


class CampaignSql(StoreBase):
    # ---- lead lists
    async def lead_list_ensure(self, name: str, at: float, by: str) -> int:
        async def body() -> int:
            await self.db.execute(
                "INSERT OR IGNORE INTO lead_lists (name, created_at, created_by) VALUES (?, ?, ?)",
                (name, at, by),
            )
            async with self.db.execute("SELECT id FROM lead_lists WHERE name = ?", (name,)) as c:
                row = await c.fetchone()
            if row is None:
                raise StoreError(f"lead list {name!r} insert did not take")
            return int(row[0])

        return int(await self._tx(body))

    async def lead_list(self, name: str) -> dict[str, Any] | None:
        async with self.db.execute("SELECT * FROM lead_lists WHERE name = ?", (name,)) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def lead_lists(self) -> list[dict[str, Any]]:
        async with self.db.execute(
            "SELECT l.*, (SELECT COUNT(*) FROM leads WHERE list_id = l.id) AS leads,"
            " (SELECT COUNT(*) FROM leads WHERE list_id = l.id AND state = 'erased') AS erased"
            " FROM lead_lists l ORDER BY l.name"
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def lead_indexes(self, list_id: int) -> set[bytes]:
        async with self.db.execute(
            "SELECT blind_index FROM leads WHERE list_id = ?", (list_id,)
        ) as cur:
            return {bytes(r[0]) for r in await cur.fetchall()}

    async def subject_ids_by_index(self, indexes: Sequence[bytes]) -> dict[bytes, int]:
        out: dict[bytes, int] = {}
        for i in range(0, len(indexes), 500):
            part = list(indexes[i : i + 500])
            marks = ", ".join("?" for _ in part)
            async with self.db.execute(
                f"SELECT blind_index, id FROM subjects WHERE blind_index IN ({marks})", part
            ) as cur:
                out.update({bytes(r[0]): int(r[1]) for r in await cur.fetchall()})
        return out

    async def subjects_add_many(self, drafts: Sequence[SubjectDraft]) -> None:
        """Create the subjects of many new leads in one transaction (an existing blind index
        keeps its subject). Refused whole if a draft's master key was rotated away meanwhile."""

        async def body() -> None:
            async with self.db.execute("SELECT kek_id FROM keyring WHERE name = 'index'") as c:
                row = await c.fetchone()
            if row is None or any(d.kek_id != str(row[0]) for d in drafts):
                raise StoreError("subject key drafted under a master key that was rotated away")
            now = time.time()
            await self.db.executemany(
                "INSERT OR IGNORE INTO subjects"
                " (kind, blind_index, value_enc, wrapped_key, kek_id, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (d.kind, d.blind_index, d.value_enc, d.wrapped_key, d.kek_id, now)
                    for d in drafts
                ],
            )

        await self._tx(body)

    async def subject_keys(self, ids: Sequence[int]) -> dict[int, tuple[bytes, bytes, str]]:
        """`subject_key` for many subjects: id -> (blind index, wrapped key, kek id)."""
        out: dict[int, tuple[bytes, bytes, str]] = {}
        for i in range(0, len(ids), 500):
            part = list(ids[i : i + 500])
            marks = ", ".join("?" for _ in part)
            async with self.db.execute(
                f"SELECT id, blind_index, wrapped_key, kek_id FROM subjects WHERE id IN ({marks})",
                part,
            ) as cur:
                for r in await cur.fetchall():
                    out[int(r[0])] = (bytes(r[1]), bytes(r[2]), str(r[3]))
        return out

    async def leads_add(
        self,
        list_id: int,
        rows: Sequence[LeadRow],
        report: tuple[str, str, int, int, Sequence[tuple[int, str]], float, str],
        audit: Audit,
        *,
        relisted: Sequence[bytes] = (),
    ) -> tuple[int, int, int]:
        """Insert the leads not already on the list, the import's report, the subject links and
        the audit entry, in one transaction. (import id, inserted, already there).

        `relisted`: blind indexes of leads already on the list that this import lists again:
        their retention age counts from now (`seen_at`)."""
        name, sha, nrows, _imported, bad, at, by = report

        async def body() -> tuple[int, int, int]:
            cur = await self.db.execute(
                "INSERT INTO lead_imports (list_id, file_name, file_sha256, rows, imported,"
                " unchanged, bad, at, by) VALUES (?, ?, ?, ?, 0, 0, ?, ?, ?)",
                (list_id, name, sha, nrows, json.dumps(list(bad)), at, by),
            )
            import_id = int(cur.lastrowid or 0)
            await self.db.executemany(
                "INSERT OR IGNORE INTO leads (list_id, blind_index, subject_id, country,"
                " timezone, basis, fields_enc, import_id, source_line, created_at, seen_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        list_id, r.blind_index, r.subject_id, r.country, r.timezone, r.basis,
                        r.fields_enc, import_id, r.source_line, at, at,
                    )
                    for r in rows
                ],
            )  # fmt: skip
            await self.db.executemany(
                "UPDATE leads SET seen_at = ? WHERE list_id = ? AND blind_index = ?"
                " AND state = 'active'",
                [(at, list_id, bi) for bi in relisted],
            )
            await self.db.execute(
                "INSERT OR IGNORE INTO subject_links"
                " (subject_id, item_type, item_id, role, linked_at)"
                " SELECT subject_id, 'lead', CAST(id AS TEXT), 'lead', ? FROM leads"
                " WHERE import_id = ?",
                (at, import_id),
            )
            async with self.db.execute(
                "SELECT COUNT(*) FROM leads WHERE import_id = ?", (import_id,)
            ) as c:
                row = await c.fetchone()
            inserted = int(row[0]) if row else 0
            unchanged = len(rows) - inserted
            await self.db.execute(
                "UPDATE lead_imports SET imported = ?, unchanged = ? WHERE id = ?",
                (inserted, unchanged, import_id),
            )
            await self._audit_append(*audit)
            return import_id, inserted, unchanged

        result: tuple[int, int, int] = await self._tx(body)
        return result

    async def leads(self, list_id: int, limit: int = 1000, offset: int = 0) -> list[dict[str, Any]]:
        async with self.db.execute(
            "SELECT * FROM leads WHERE list_id = ? ORDER BY id LIMIT ? OFFSET ?",
            (list_id, limit, offset),
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def lead(self, lead_id: int) -> dict[str, Any] | None:
        async with self.db.execute("SELECT * FROM leads WHERE id = ?", (lead_id,)) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def lead_imports(self, list_id: int) -> list[dict[str, Any]]:
        async with self.db.execute(
            "SELECT * FROM lead_imports WHERE list_id = ? ORDER BY id", (list_id,)
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def lead_import(self, import_id: int) -> dict[str, Any] | None:
        async with self.db.execute(
            "SELECT i.*, l.name AS list_name FROM lead_imports i"
            " JOIN lead_lists l ON l.id = i.list_id WHERE i.id = ?",
            (import_id,),
        ) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def lead_ids_by_index(self, blind_index: bytes) -> list[int]:
        """The number's leads on every list."""
        async with self.db.execute(
            "SELECT id FROM leads WHERE blind_index = ? ORDER BY id", (blind_index,)
        ) as cur:
            return [int(r[0]) for r in await cur.fetchall()]

    async def lead_erase(self, lead_id: int, audit: Audit) -> bool:
        """Drop a lead's personal data (opt-out on an erasing line); the row and its blind index
        stay so the campaign's counts hold and a re-import finds it."""

        async def body() -> bool:
            cur = await self.db.execute(
                "UPDATE leads SET fields_enc = x'', state = 'erased' WHERE id = ?"
                " AND state != 'erased'",
                (lead_id,),
            )
            await self.db.execute(
                "DELETE FROM subject_links WHERE item_type = 'lead' AND item_id = ?",
                (str(lead_id),),
            )
            await self._audit_append(*audit)
            return cur.rowcount > 0

        return bool(await self._tx(body))

    # ---- campaigns
    async def campaign_add(  # noqa: PLR0917 - the row's columns
        self, name: str, line: str, list_id: int, settings: str, at: float, by: str, audit: Audit
    ) -> int:
        async def body() -> int:
            async with self.db.execute("SELECT 1 FROM campaigns WHERE name = ?", (name,)) as c:
                if await c.fetchone():
                    raise StoreError(f"a campaign named {name!r} exists")
            cur = await self.db.execute(
                "INSERT INTO campaigns (name, line, list_id, state, settings, created_at,"
                " created_by, updated_at) VALUES (?, ?, ?, 'draft', ?, ?, ?, ?)",
                (name, line, list_id, settings, at, by, at),
            )
            cid = int(cur.lastrowid or 0)
            await self.db.execute(
                "INSERT INTO campaign_leads (campaign_id, lead_id, state, updated_at)"
                " SELECT ?, id, 'pending', ? FROM leads WHERE list_id = ? AND state = 'active'",
                (cid, at, list_id),
            )
            await self._audit_append(*audit)
            return cid

        return int(await self._tx(body))

    async def campaign_sync_leads(self, campaign_id: int, at: float) -> int:
        """Add leads imported into the campaign's list after it was created."""

        async def body() -> int:
            cur = await self.db.execute(
                "INSERT OR IGNORE INTO campaign_leads (campaign_id, lead_id, state, updated_at)"
                " SELECT c.id, l.id, 'pending', ? FROM campaigns c JOIN leads l"
                " ON l.list_id = c.list_id WHERE c.id = ? AND l.state = 'active'",
                (at, campaign_id),
            )
            return max(cur.rowcount, 0)

        return int(await self._tx(body))

    async def campaign(self, ref: int | str) -> dict[str, Any] | None:
        col = "id" if isinstance(ref, int) else "name"
        async with self.db.execute(f"SELECT * FROM campaigns WHERE {col} = ?", (ref,)) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def campaigns(self, states: Sequence[str] = ()) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM campaigns", list(states)
        if states:
            sql += f" WHERE state IN ({', '.join('?' for _ in states)})"
        async with self.db.execute(sql + " ORDER BY id", args) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def campaign_set_state(
        self, campaign_id: int, state: str, allowed_from: Sequence[str], at: float, audit: Audit
    ) -> str:
        """Move a campaign to `state` if it is in one of `allowed_from`; the previous state."""

        async def body() -> str:
            async with self.db.execute(
                "SELECT state FROM campaigns WHERE id = ?", (campaign_id,)
            ) as cur:
                row = await cur.fetchone()
            if row is None:
                raise StoreError(f"no campaign {campaign_id}")
            if str(row[0]) not in allowed_from:
                raise StoreError(
                    f"campaign {campaign_id} is {row[0]}; cannot go to {state} from there"
                )
            await self.db.execute(
                "UPDATE campaigns SET state = ?, updated_at = ? WHERE id = ?",
                (state, at, campaign_id),
            )
            await self._audit_append(*audit)
            return str(row[0])

        return str(await self._tx(body))

    # ---- the dialler
    async def campaign_due(self, campaign_id: int, now: float, limit: int) -> list[dict[str, Any]]:
        async with self.db.execute(
            "SELECT cl.*, l.blind_index, l.subject_id, l.country, l.timezone, l.basis,"
            " l.fields_enc, l.state AS lead_state FROM campaign_leads cl"
            " JOIN leads l ON l.id = cl.lead_id"
            " WHERE cl.campaign_id = ? AND cl.state = 'pending' AND cl.next_at <= ?"
            " ORDER BY cl.next_at, cl.lead_id LIMIT ?",
            (campaign_id, now, limit),
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def campaign_counts(self, campaign_id: int) -> dict[str, int]:
        async with self.db.execute(
            "SELECT state, COUNT(*) FROM campaign_leads WHERE campaign_id = ? GROUP BY state",
            (campaign_id,),
        ) as cur:
            return {str(r[0]): int(r[1]) for r in await cur.fetchall()}

    async def attempts_since(self, campaign_id: int, since: float) -> int:
        """Dials (not blocked attempts) claimed at or after `since`: the rate limit's count."""
        async with self.db.execute(
            "SELECT COUNT(*) FROM campaign_attempts WHERE campaign_id = ? AND claimed_at >= ?"
            " AND state != 'blocked'",
            (campaign_id, since),
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def attempts(
        self, campaign_id: int | None = None, *, state: str | None = None
    ) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM campaign_attempts WHERE 1", list[Any]()
        if campaign_id is not None:
            sql += " AND campaign_id = ?"
            args.append(campaign_id)
        if state is not None:
            sql += " AND state = ?"
            args.append(state)
        async with self.db.execute(sql + " ORDER BY id", args) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def attempt_claim(self, campaign_id: int, lead_id: int, call_id: str, at: float) -> bool:
        """Claim the lead for one dial: False (nothing written) if it is no longer due or the
        campaign no longer runs."""

        async def body() -> bool:
            cur = await self.db.execute(
                "UPDATE campaign_leads SET state = 'dialling', attempts = attempts + 1,"
                " updated_at = ? WHERE campaign_id = ? AND lead_id = ? AND state = 'pending'"
                " AND EXISTS (SELECT 1 FROM campaigns WHERE id = ? AND state = 'running')",
                (at, campaign_id, lead_id, campaign_id),
            )
            if cur.rowcount != 1:
                return False
            await self.db.execute(
                "INSERT INTO campaign_attempts (campaign_id, lead_id, call_id, state, claimed_at)"
                " VALUES (?, ?, ?, 'dialling', ?)",
                (campaign_id, lead_id, call_id, at),
            )
            return True

        return bool(await self._tx(body))

    async def attempt_blocked(
        self,
        campaign_id: int,
        lead_id: int,
        call_id: str,
        reason: str,
        at: float,
        *,
        final: bool,
        next_at: float,
    ) -> None:
        """Record an attempt the dial-time checks refused; the lead ends (final) or waits."""

        async def body() -> None:
            await self.db.execute(
                "INSERT INTO campaign_attempts (campaign_id, lead_id, call_id, state,"
                " claimed_at, ended_at, reason) VALUES (?, ?, ?, 'blocked', ?, ?, ?)",
                (campaign_id, lead_id, call_id, at, at, reason),
            )
            if final:
                await self.db.execute(
                    "UPDATE campaign_leads SET state = 'blocked', outcome = 'blocked',"
                    " detail = ?, updated_at = ? WHERE campaign_id = ? AND lead_id = ?",
                    (reason, at, campaign_id, lead_id),
                )
            else:
                await self.db.execute(
                    "UPDATE campaign_leads SET next_at = ?, detail = ?, updated_at = ?"
                    " WHERE campaign_id = ? AND lead_id = ?",
                    (next_at, reason, at, campaign_id, lead_id),
                )

        await self._tx(body)

    async def attempt_finish(
        self,
        call_id: str,
        *,
        state: str,
        at: float,
        disposition: str,
        outcome: str,
        reason: str,
        billable_s: int,
        lead_state: str,
        next_at: float,
        detail: str,
    ) -> bool:
        """Close a 'dialling' attempt and move its lead on, atomically; False if it was not
        (or no longer) dialling."""

        async def body() -> bool:
            cur = await self.db.execute(
                "UPDATE campaign_attempts SET state = ?, ended_at = ?, disposition = ?,"
                " outcome = ?, reason = ?, billable_s = MAX(billable_s, ?) WHERE call_id = ?"
                " AND state IN ('dialling', 'ended')",
                (state, at, disposition, outcome, reason, billable_s, call_id),
            )
            if cur.rowcount != 1:
                return False
            await self.db.execute(
                "UPDATE campaign_leads SET state = ?, next_at = ?, outcome = ?, detail = ?,"
                " updated_at = ? WHERE (campaign_id, lead_id) IN"
                " (SELECT campaign_id, lead_id FROM campaign_attempts WHERE call_id = ?)",
                (lead_state, next_at, outcome, detail, at, call_id),
            )
            return True

        return bool(await self._tx(body))

    async def attempt_ended(
        self, call_id: str, at: float, disposition: str, billable_s: int
    ) -> bool:
        """The call is over (its concurrency slot is free); its outcome waits for the report."""

        async def body() -> bool:
            cur = await self.db.execute(
                "UPDATE campaign_attempts SET state = 'ended', ended_at = ?, disposition = ?,"
                " billable_s = ? WHERE call_id = ? AND state = 'dialling'",
                (at, disposition, billable_s, call_id),
            )
            return cur.rowcount > 0

        return bool(await self._tx(body))

    async def attempts_open(self) -> list[dict[str, Any]]:
        """Attempts not resolved yet, of any campaign (a paused or stopped one's too)."""
        async with self.db.execute(
            "SELECT a.*, l.blind_index, l.state AS lead_state, cl.attempts AS lead_attempts"
            " FROM campaign_attempts a JOIN leads l ON l.id = a.lead_id"
            " JOIN campaign_leads cl ON cl.campaign_id = a.campaign_id AND cl.lead_id = a.lead_id"
            " WHERE a.state IN ('dialling', 'ended') ORDER BY a.id"
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def campaign_finish_if_done(self, campaign_id: int, at: float) -> bool:
        """A running campaign whose leads are all in a final state becomes 'done'."""

        async def body() -> bool:
            marks = ", ".join("?" for _ in FINAL_LEAD_STATES)
            cur = await self.db.execute(
                "UPDATE campaigns SET state = 'done', updated_at = ? WHERE id = ?"
                " AND state = 'running' AND NOT EXISTS (SELECT 1 FROM campaign_leads"
                f" WHERE campaign_id = ? AND state NOT IN ({marks}))",
                (at, campaign_id, campaign_id, *FINAL_LEAD_STATES),
            )
            return cur.rowcount > 0

        return bool(await self._tx(body))

    async def campaign_leads(self, campaign_id: int) -> list[dict[str, Any]]:
        async with self.db.execute(
            "SELECT * FROM campaign_leads WHERE campaign_id = ? ORDER BY lead_id", (campaign_id,)
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def campaign_leads_for_index(self, blind_index: bytes) -> list[dict[str, Any]]:
        """Every campaign lead with this number (an opt-out stops all of them)."""
        async with self.db.execute(
            "SELECT cl.campaign_id, cl.lead_id, cl.state FROM campaign_leads cl"
            " JOIN leads l ON l.id = cl.lead_id WHERE l.blind_index = ?",
            (blind_index,),
        ) as cur:
            return [dict(r) for r in await cur.fetchall()]

    async def campaign_lead_stop(
        self, campaign_id: int, lead_id: int, outcome: str, detail: str, at: float
    ) -> bool:
        """End a lead that is not out on a call (pending) with `outcome` (an opt-out elsewhere)."""

        async def body() -> bool:
            cur = await self.db.execute(
                "UPDATE campaign_leads SET state = 'blocked', outcome = ?, detail = ?,"
                " updated_at = ? WHERE campaign_id = ? AND lead_id = ? AND state = 'pending'",
                (outcome, detail, at, campaign_id, lead_id),
            )
            return cur.rowcount > 0

        return bool(await self._tx(body))

    # ---- one data subject's leads (access export, erasure)
    async def leads_by_ids(self, lead_ids: Sequence[int]) -> list[dict[str, Any]]:
        """The leads, with their list's name (`list_name`), in id order."""
        return await self._lead_rows(
            "SELECT l.*, ll.name AS list_name FROM leads l JOIN lead_lists ll"
            " ON ll.id = l.list_id WHERE l.id IN ({marks}) ORDER BY l.id",
            lead_ids,
        )

    async def lead_campaigns(self, lead_ids: Sequence[int]) -> list[dict[str, Any]]:
        """The leads' places in campaigns: lead_id, campaign, line, the lead's state, attempts,
        outcome and detail there."""
        return await self._lead_rows(
            "SELECT cl.lead_id, c.name AS campaign, c.line, cl.state, cl.attempts, cl.outcome,"
            " cl.detail, cl.updated_at FROM campaign_leads cl JOIN campaigns c"
            " ON c.id = cl.campaign_id WHERE cl.lead_id IN ({marks})"
            " ORDER BY cl.lead_id, c.id",
            lead_ids,
        )

    async def lead_attempts(self, lead_ids: Sequence[int]) -> list[dict[str, Any]]:
        """Every dial attempt on the leads (blocked ones with their reason), oldest first."""
        return await self._lead_rows(
            "SELECT a.lead_id, c.name AS campaign, a.call_id, a.state, a.claimed_at,"
            " a.ended_at, a.disposition, a.outcome, a.reason, a.billable_s"
            " FROM campaign_attempts a JOIN campaigns c ON c.id = a.campaign_id"
            " WHERE a.lead_id IN ({marks}) ORDER BY a.id",
            lead_ids,
        )

    async def _lead_rows(self, sql: str, lead_ids: Sequence[int]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        ids = [int(i) for i in lead_ids]
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ", ".join("?" for _ in part)
            async with self.db.execute(sql.format(marks=marks), part) as cur:
                out.extend(dict(r) for r in await cur.fetchall())
        return out
