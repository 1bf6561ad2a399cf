"""SQL for generated data sets: bulk loading and sampling (bench/synth.py, bench/privacy.py).

The appliance itself never calls these. Loading relaxes durability (journal in memory, no
fsync) and takes many rows per statement in large transactions, which is only right for a
database being built from scratch that is thrown away if the build fails.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from appliance.store.base import StoreBase, StoreError

# The columns a loader gives, in order, per table it may load. Ids are given explicitly so
# that links can name rows before the rows exist in the database.
BULK_COLUMNS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "subjects": (
            "id", "kind", "blind_index", "value_enc", "wrapped_key", "kek_id", "created_at",
        ),
        "calls": (
            "id", "line", "direction", "calling_number", "caller_name", "dialed_number",
            "started_at", "answered_at", "ended_at", "disposition", "flags",
        ),
        "cdrs": (
            "call_id", "uniqueid", "sequence", "calling_number", "caller_name", "dialed_number",
            "context", "direction", "line", "start_at", "answer_at", "end_at", "duration_s",
            "billable_s", "disposition", "hangup_cause", "hangup_cause_text", "channel",
            "dest_channel", "last_app", "source", "written_at",
        ),
        "subject_links": ("subject_id", "item_type", "item_id", "role", "linked_at"),
        "recordings": (
            "id", "call_id", "line", "leg", "path", "format", "duration_s", "size_bytes",
            "sha256", "flags", "created_at", "cipher", "key_subjects", "stored_bytes",
        ),
        "consents": (
            "call_id", "line", "decision", "method", "prompt", "asked_at", "decided_at",
        ),
    }
)  # fmt: skip
# Loaded in this order within a transaction: parents before the rows that refer to them.
_LOAD_ORDER = ("subjects", "calls", "cdrs", "recordings", "consents", "subject_links")
_COUNTABLE = frozenset(BULK_COLUMNS) | {"audit_log", "rights_requests", "erased_subjects"}


class BulkSql(StoreBase):
    async def bulk_load_begin(self) -> None:
        """Fast, non-durable settings for loading an empty database (see the module doc)."""
        async with self._write_lock:
            async with self.db.execute("SELECT EXISTS (SELECT 1 FROM calls)") as cur:
                row = await cur.fetchone()
            if row is not None and row[0]:
                raise StoreError(f"bulk loading is for an empty database; {self.path} has calls")
            # Leaving WAL needs the only connection, which a freshly built database has.
            await self.db.execute("PRAGMA journal_mode=MEMORY")
            await self.db.execute("PRAGMA synchronous=OFF")
            await self.db.execute("PRAGMA cache_size=-262144")  # 256 MiB: the link index fits

    async def bulk_load_end(self) -> None:
        """Back to the appliance's settings (WAL, synchronous FULL, default cache)."""
        async with self._write_lock:
            await self.db.execute("PRAGMA journal_mode=WAL")
            await self.db.execute("PRAGMA synchronous=FULL")
            await self.db.execute("PRAGMA cache_size=-2000")
            await self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def bulk_insert(self, rows: Mapping[str, Sequence[Sequence[Any]]]) -> dict[str, int]:
        """Insert rows (tuples in BULK_COLUMNS order) into several tables in one transaction."""
        unknown = set(rows) - set(BULK_COLUMNS)
        if unknown:
            raise StoreError(f"bulk_insert cannot load {sorted(unknown)}")

        async def body() -> dict[str, int]:
            counts: dict[str, int] = {}
            for table in _LOAD_ORDER:
                batch = rows.get(table)
                if not batch:
                    continue
                cols = BULK_COLUMNS[table]
                bad = next((r for r in batch if len(r) != len(cols)), None)
                if bad is not None:
                    raise StoreError(f"{table}: a row has {len(bad)} values, expected {len(cols)}")
                await self.db.executemany(
                    f"INSERT INTO {table} ({', '.join(cols)}) "
                    f"VALUES ({', '.join('?' for _ in cols)})",
                    batch,
                )
                counts[table] = len(batch)
            return counts

        return dict(await self._tx(body))

    async def table_counts(self, tables: Collection[str]) -> dict[str, int]:
        bad = set(tables) - _COUNTABLE
        if bad:
            raise StoreError(f"cannot count {sorted(bad)}")
        out = {}
        for table in sorted(tables):
            async with self.db.execute(f"SELECT COUNT(*) FROM {table}") as cur:
                row = await cur.fetchone()
            out[table] = int(row[0]) if row else 0
        return out

    async def subject_activity(self, kind: str) -> list[tuple[int, bytes, int, int]]:
        """(subject id, sealed value, calls, recordings of those calls) for every subject of
        `kind`: for picking benchmark subjects by how much data they have."""
        async with self.db.execute(
            "SELECT s.id, s.value_enc,"
            " (SELECT COUNT(*) FROM subject_links l"
            "   WHERE l.subject_id = s.id AND l.item_type = 'call'),"
            " (SELECT COUNT(*) FROM subject_links l JOIN recordings r ON r.call_id = l.item_id"
            "   WHERE l.subject_id = s.id AND l.item_type = 'call')"
            " FROM subjects s WHERE s.kind = ? ORDER BY s.id",
            (kind,),
        ) as cur:
            return [(int(r[0]), bytes(r[1]), int(r[2]), int(r[3])) for r in await cur.fetchall()]
