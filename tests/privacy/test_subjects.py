"""Identifiers, subjects linked from CDRs, one-query lookup, crypto-shredding."""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import replace

import pytest

from appliance.privacy import Identifier, IdentifierError, KeyShreddedError, Privacy, identifiers
from appliance.privacy.stream import StreamError
from tests.store.test_db import CDR


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("+46 70 123 45 67", Identifier("phone", "+46701234567")),
        ("070-123 45 67", Identifier("phone", "+46701234567")),
        ("0046701234567", Identifier("phone", "+46701234567")),
        ("+33 1 42 68 53 00", Identifier("phone", "+33142685300")),
        ("201", Identifier("extension", "201")),
        (" Anna.Svensson@Example.COM ", Identifier("email", "anna.svensson@example.com")),
    ],
)
def test_identifiers_normalise(raw: str, want: Identifier) -> None:
    assert identifiers.parse(raw, "SE", {"201"}) == want


@pytest.mark.parametrize("raw", ["12", "+46 70", "not a number", "+999 123", "a@b"])
def test_bad_identifiers_are_clear_errors(raw: str) -> None:
    with pytest.raises(IdentifierError, match="not a"):
        identifiers.parse(raw, "SE", {"201"})


def test_caller_ids_never_fail() -> None:
    assert identifiers.from_caller_id("anonymous", "SE", ()) is None
    assert identifiers.from_caller_id("", "SE", ()) is None
    assert identifiers.from_caller_id("load17", "SE", ()) == Identifier("other", "load17")


async def test_a_cdr_links_its_caller_and_callee_not_the_line(privacy: Privacy) -> None:
    outbound = replace(CDR, calling_number="100", dialed_number="+46701234567")
    assert await privacy.subjects.add_cdr(CDR)  # 201 -> line 100
    assert await privacy.subjects.add_cdr(replace(outbound, call_id="200.1", uniqueid="200.1"))
    assert not await privacy.subjects.add_cdr(CDR)  # idempotent
    desk = await privacy.subjects.items(privacy.subjects.parse("201"))
    assert [(i["item_type"], i["item_id"], i["role"]) for i in desk] == [
        ("call", "100.1", "caller")
    ]
    person = await privacy.subjects.items(privacy.subjects.parse("070 123 45 67"))
    assert [(i["item_type"], i["item_id"], i["role"]) for i in person] == [
        ("call", "200.1", "callee")
    ]
    assert await privacy.subjects.items(Identifier("extension", "100")) == []
    con = sqlite3.connect(privacy.cfg.database)
    assert con.execute("SELECT COUNT(*) FROM subjects").fetchone()[0] == 2
    # Nothing stored in the clear: the number appears nowhere in the subjects table.
    blob = b"".join(
        bytes(c)
        for row in con.execute("SELECT * FROM subjects")
        for c in row
        if isinstance(c, bytes)
    )
    assert b"+46701234567" not in blob and b"201" not in blob


async def test_lookup_is_one_indexed_query(privacy: Privacy) -> None:
    await privacy.subjects.add_cdr(CDR)
    con = sqlite3.connect(privacy.cfg.database)
    plan = con.execute(
        "EXPLAIN QUERY PLAN SELECT s.id, l.item_type FROM subjects s"
        " JOIN subject_links l ON l.subject_id = s.id WHERE s.blind_index = ?",
        (b"x",),
    ).fetchall()
    text = " ".join(str(r[-1]) for r in plan)
    assert "SCAN" not in text, text


async def test_subject_value_is_recoverable_with_its_key(privacy: Privacy) -> None:
    sid = await privacy.subjects.ensure(Identifier("email", "a@example.com"))
    row = await privacy.db.subject_by_index(
        await privacy.keyring.blind_index(Identifier("email", "a@example.com"))
    )
    assert row is not None and row["id"] == sid
    assert await privacy.keyring.subject_value(sid, bytes(row["value_enc"])) == "a@example.com"


async def test_erasing_any_subject_of_a_file_shreds_every_copy(privacy: Privacy) -> None:
    a = await privacy.subjects.ensure(Identifier("phone", "+46701234567"))
    b = await privacy.subjects.ensure(Identifier("extension", "202"))
    src = privacy.cfg.state_dir / "plain.wav"
    src.write_bytes(b"RIFF" + bytes(3000))
    dest = privacy.cfg.state_dir / "rec.cvae"
    await privacy.files.encrypt(src, dest, [a, b], "recording:1:x:mixed")
    copy = privacy.cfg.state_dir / "backup-copy.cvae"
    shutil.copy(dest, copy)
    assert b"".join([c async for c in privacy.files.decrypt(copy, [a, b], "recording:1:x:mixed")])
    with pytest.raises(StreamError):  # the context is part of the key
        _ = [c async for c in privacy.files.decrypt(copy, [a, b], "recording:2:x:mixed")]
    con = sqlite3.connect(privacy.cfg.database)
    con.execute("DELETE FROM subjects WHERE id = ?", (a,))  # what erasure does
    con.commit()
    for path in (dest, copy):
        with pytest.raises(KeyShreddedError, match=f"subject {a} was erased"):
            _ = [c async for c in privacy.files.decrypt(path, [a, b], "recording:1:x:mixed")]
