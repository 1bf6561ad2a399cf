"""The audit chain: appends, verifies, and names the first tampered row."""

from __future__ import annotations

import sqlite3

import pytest

from appliance.privacy import Actor, Privacy

ALICE = Actor("alice", "admin")


async def fill(privacy: Privacy, n: int = 5) -> None:
    for i in range(n):
        await privacy.audit.record(ALICE, "recording.play", f"recording:{i}", "quality review")


async def test_an_untouched_chain_verifies(privacy: Privacy) -> None:
    assert (await privacy.audit.verify()).ok  # empty
    await fill(privacy)
    v = await privacy.audit.verify(page=2)  # pages join up
    assert v.ok and v.rows == 5 and v.head_seq == 5 and len(v.head_hash) == 64


def raw(privacy: Privacy) -> sqlite3.Connection:
    return sqlite3.connect(privacy.cfg.database)


async def test_the_table_refuses_update_and_delete(privacy: Privacy) -> None:
    await fill(privacy, 2)
    con = raw(privacy)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        con.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        con.execute("DELETE FROM audit_log WHERE seq = 1")


@pytest.mark.parametrize(
    ("tamper", "bad_seq", "reason"),
    [
        ("UPDATE audit_log SET purpose = 'curiosity' WHERE seq = 3", 3, "hash does not match"),
        ("UPDATE audit_log SET at = at + 1 WHERE seq = 4", 4, "hash does not match"),
        ("DELETE FROM audit_log WHERE seq = 2", 2, "row 2 is missing"),
        ("UPDATE audit_log SET prev_hash = hash WHERE seq = 5", 5, "prev_hash"),
    ],
)
async def test_tampering_names_the_first_bad_row(
    privacy: Privacy, tamper: str, bad_seq: int, reason: str
) -> None:
    await fill(privacy)
    con = raw(privacy)
    # An attacker with write access to the file drops the guard first.
    con.execute("DROP TRIGGER audit_log_no_update")
    con.execute("DROP TRIGGER audit_log_no_delete")
    con.execute(tamper)
    con.commit()
    v = await privacy.audit.verify()
    assert not v.ok and v.first_bad_seq == bad_seq and reason in v.reason
    assert v.rows == bad_seq - 1


async def test_a_forger_without_the_key_cannot_rebuild_the_chain(privacy: Privacy) -> None:
    import hashlib

    await fill(privacy, 3)
    con = raw(privacy)
    con.execute("DROP TRIGGER audit_log_no_update")
    # Recompute plain sha256 links after editing row 1: without the HMAC key this fails.
    con.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1")
    con.execute(
        "UPDATE audit_log SET hash = ? WHERE seq = 1", (hashlib.sha256(b"forged").hexdigest(),)
    )
    con.commit()
    v = await privacy.audit.verify()
    assert v.first_bad_seq == 1
