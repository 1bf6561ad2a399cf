"""The audit chain: who did what to which personal data, for what purpose — tamper-evident.

Each row's hash is HMAC-SHA256 (keyring 'audit' key) over the previous row's hash and the
row's own fields, so changing, removing or reordering any row breaks every later link, and
without the key a forger cannot recompute the chain. SQLite triggers refuse UPDATE and DELETE
on the table as a second line. Rows name objects by id (`recording:12`, `dnc:3`), never by
personal data, so the log survives erasure without keeping what was erased.

Limit: dropping the newest rows leaves a valid shorter chain; `verify` reports the head (seq,
hash) so an operator or a backup can pin it, and later work can anchor it off-box.

Retention drops the oldest rows only as a prefix, under a checkpoint: a sealed
`audit.checkpoint` row names the last dropped row's seq and hash (appliance.privacy.retention).
`verify` starts after the newest checkpoint and requires the newest sealed checkpoint row to
name the same row and hash, so a prefix dropped any other way still fails.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from appliance.privacy import crypto
from appliance.privacy.keyring import Keyring
from appliance.store import AuditEntry, AuditSeal, Database
from appliance.store.base import AUDIT_GENESIS


@dataclass(frozen=True)
class Actor:
    """Who acts: a person or a component, with the role the action was allowed under."""

    name: str
    role: str

    @classmethod
    def system(cls, component: str) -> Actor:
        return cls(name=component, role="system")


@dataclass(frozen=True)
class Verification:
    ok: bool
    rows: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    reason: str = ""
    sealed_through: int = 0
    """Rows up to this seq were dropped by retention under a verified checkpoint."""


CHECKPOINT_ACTION = "audit.checkpoint"


def _checkpoint_claim(detail: str) -> tuple[int, str] | None:
    try:
        d = json.loads(detail)
        return int(d["upto_seq"]), str(d["upto_hash"])
    except (ValueError, TypeError, KeyError):
        return None


def _digest(key: bytes, entry: AuditEntry, seq: int, prev: str) -> str:
    fields = [
        seq,
        prev,
        repr(entry.at),
        entry.actor,
        entry.role,
        entry.action,
        entry.object,
        entry.purpose,
        entry.detail,
    ]
    return crypto.keyed_hash(key, json.dumps(fields).encode()).hex()


class AuditLog:
    def __init__(self, db: Database, keyring: Keyring) -> None:
        self.db = db
        self.keyring = keyring

    async def sealer(self) -> AuditSeal:
        key = await self.keyring.system_key("audit")
        return lambda entry, seq, prev: _digest(key, entry, seq, prev)

    async def entry(
        self, actor: Actor, action: str, obj: str, purpose: str, detail: str = ""
    ) -> tuple[AuditEntry, AuditSeal]:
        """An entry to append inside another write's transaction (e.g. `db.dnc_add`)."""
        row = AuditEntry(
            at=time.time(),
            actor=actor.name,
            role=actor.role,
            action=action,
            object=obj,
            purpose=purpose,
            detail=detail,
        )
        return row, await self.sealer()

    async def record(
        self, actor: Actor, action: str, obj: str, purpose: str, detail: str = ""
    ) -> int:
        return await self.db.audit_append(*await self.entry(actor, action, obj, purpose, detail))

    async def verify(self, page: int = 5000) -> Verification:
        key = await self.keyring.system_key("audit")
        prev, expected_seq, rows = AUDIT_GENESIS, 1, 0
        cp = await self.db.audit_checkpoint()
        if cp is not None:
            prev, expected_seq = str(cp["upto_hash"]), int(cp["upto_seq"]) + 1
        claimed: tuple[int, str] | None = None
        after = expected_seq - 1
        while batch := await self.db.audit_rows(after_seq=after, limit=page):
            for r in batch:
                seq = int(r["seq"])
                entry = AuditEntry(
                    at=float(r["at"]),
                    actor=str(r["actor"]),
                    role=str(r["role"]),
                    action=str(r["action"]),
                    object=str(r["object"]),
                    purpose=str(r["purpose"]),
                    detail=str(r["detail"]),
                )
                reason = ""
                if seq != expected_seq:
                    reason = f"row {expected_seq} is missing (next is {seq})"
                    seq = expected_seq
                elif r["prev_hash"] != prev:
                    reason = "prev_hash does not match the previous row's hash"
                elif r["hash"] != _digest(key, entry, seq, prev):
                    reason = "hash does not match the row's contents"
                if reason:
                    return Verification(
                        False, rows, seq - 1, prev, first_bad_seq=seq, reason=reason
                    )
                if entry.action == CHECKPOINT_ACTION:
                    claimed = _checkpoint_claim(entry.detail)
                prev, expected_seq, rows = str(r["hash"]), seq + 1, rows + 1
            after = int(batch[-1]["seq"])
        if cp is None:
            return Verification(True, rows, expected_seq - 1, prev)
        upto = int(cp["upto_seq"])
        if claimed != (upto, str(cp["upto_hash"])):
            return Verification(
                False,
                rows,
                expected_seq - 1,
                prev,
                first_bad_seq=upto + 1,
                reason=f"rows up to {upto} are gone but no sealed checkpoint row vouches for it",
            )
        return Verification(True, rows, expected_seq - 1, prev, sealed_through=upto)
