"""Recordings leave the spool encrypted; reading them back is a verified, audited stream."""

from __future__ import annotations

import hashlib
import math
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from appliance.privacy import Actor, Identifier, KeyShreddedError, Privacy
from appliance.privacy.stream import StreamError
from appliance.store import Database
from appliance.telephony.recordings import RecordingStore, wav_info_of
from tests.privacy.conftest import make_cfg
from tests.store.test_db import CDR
from tests.telephony.test_service import wav_bytes

QA = Actor("qa", "supervisor")


@pytest_asyncio.fixture
async def privacy(tmp_path: Path) -> AsyncIterator[Privacy]:
    cfg = make_cfg(tmp_path)
    async with Database(cfg.database) as db:
        yield Privacy(cfg, db)


def file_bytes(rec: dict, replace_with: bytes | None = None) -> bytes:
    path = Path(rec["path"])
    if replace_with is not None:
        path.write_bytes(replace_with)
    return path.read_bytes()


def entropy(data: bytes) -> float:
    counts = Counter(data)
    return -sum(c / len(data) * math.log2(c / len(data)) for c in counts.values())


async def ingest(privacy: Privacy, tmp_path: Path) -> tuple[RecordingStore, dict, bytes]:
    spool = tmp_path / "spool"
    spool.mkdir()
    wav = wav_bytes(2.0)
    (spool / f"cv-{CDR.call_id}-reception-mixed.wav").write_bytes(wav)
    await privacy.subjects.add_cdr(CDR)
    store = RecordingStore(spool, tmp_path / "rec", privacy.db, privacy)
    [_row] = await store.ingest_call(CDR.call_id)
    assert list(spool.iterdir()) == []
    [rec] = await privacy.db.recordings(CDR.call_id)
    return store, rec, wav


async def read(store: RecordingStore, rec: dict) -> bytes:
    return b"".join([c async for c in store.open_recording(rec, actor=QA, purpose="qa")])


async def test_stored_encrypted_and_read_back_audited(privacy: Privacy, tmp_path: Path) -> None:
    store, rec, wav = await ingest(privacy, tmp_path)
    stored = file_bytes(rec)
    assert not stored.startswith(b"RIFF") and entropy(stored) > 7.9
    assert rec["sha256"] == hashlib.sha256(wav).hexdigest()
    assert rec["size_bytes"] == len(wav) and rec["stored_bytes"] == len(stored)
    assert rec["cipher"] == "cvae1" and rec["duration_s"] == 2.0
    subject = await privacy.db.subject_by_index(
        await privacy.keyring.blind_index(privacy.subjects.parse("201"))
    )
    assert subject is not None and rec["key_subjects"] == str(subject["id"])
    items = await privacy.subjects.items(privacy.subjects.parse("201"))
    assert ("recording", str(rec["id"]), "key") in {
        (i["item_type"], i["item_id"], i["role"]) for i in items
    }
    assert await read(store, rec) == wav
    info = wav_info_of(wav[:44], len(wav))
    assert info.complete and info.rate == 8000
    con = sqlite3.connect(privacy.cfg.database)
    assert con.execute("SELECT actor, action, object, purpose FROM audit_log").fetchall() == [
        ("qa", "recording.play", f"recording:{rec['id']}", "qa")
    ]


async def test_tampering_and_erasure_stop_playback(privacy: Privacy, tmp_path: Path) -> None:
    store, rec, _ = await ingest(privacy, tmp_path)
    good = file_bytes(rec)
    file_bytes(rec, good[:-100])
    with pytest.raises(StreamError):
        await read(store, rec)
    file_bytes(rec, good)
    with pytest.raises(StreamError, match="does not match its sha256"):
        await read(store, {**rec, "sha256": "0" * 64})
    con = sqlite3.connect(privacy.cfg.database)
    con.execute("PRAGMA foreign_keys=ON")
    con.execute("DELETE FROM subjects")
    con.commit()
    with pytest.raises(KeyShreddedError):
        await read(store, rec)


async def test_a_call_without_subjects_gets_a_key_of_its_own(
    privacy: Privacy, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "cv-300.1-reception-caller.wav").write_bytes(wav_bytes(0.5))
    store = RecordingStore(spool, tmp_path / "rec", privacy.db, privacy)
    [_row] = await store.ingest_call("300.1")
    items = await privacy.subjects.items(privacy.subjects.parse("201"))
    assert items == []
    own = await privacy.subjects.items(Identifier("call", "300.1"))
    assert [(i["item_type"], i["role"]) for i in own] == [("recording", "key")]
    [rec] = await privacy.db.recordings("300.1")
    assert len(await read(store, rec)) == len(wav_bytes(0.5))


def test_spool_filesystem_reads_proc_mounts() -> None:
    from appliance.telephony.recordings import spool_filesystem

    assert spool_filesystem(Path("/proc/self")) == "proc"
    assert spool_filesystem(Path("/")) is not None
