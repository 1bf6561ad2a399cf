"""Access export and erasure completeness, with and without a legal hold; a full disk."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import sqlite3
import subprocess
import wave
import zipfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import pytest_asyncio

from appliance.privacy import Privacy
from appliance.privacy.rights import Rights, RightsError, Status
from appliance.privacy.rights.export import schema
from appliance.store import Database
from tests.privacy.conftest import make_cfg
from tests.privacy.rights_fixtures import NEEDLES, NUMBER, OP, done, seed


@pytest.fixture
def logfile(tmp_path: Path) -> Iterator[Path]:
    """The application log, at DEBUG, as a file the erasure test scans."""
    path = tmp_path / "state" / "log" / "callvault.log"
    path.parent.mkdir(parents=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield path
    root.removeHandler(handler)
    root.setLevel(old)
    handler.close()


@pytest_asyncio.fixture
async def env(tmp_path: Path, logfile: Path) -> AsyncIterator[tuple[Privacy, Rights]]:
    cfg = make_cfg(tmp_path)
    async with Database(cfg.database) as db:
        privacy = Privacy(cfg, db)
        yield privacy, Rights(privacy)


def open_export(path: str) -> tuple[zipfile.ZipFile, dict[str, Any]]:
    zf = zipfile.ZipFile(path)
    manifest = json.loads(zf.read("manifest.json"))
    return zf, manifest


async def test_access_export_is_complete_verified_and_valid(
    env: tuple[Privacy, Rights], tmp_path: Path
) -> None:
    privacy, rights = env
    seeded = await seed(privacy, tmp_path)
    rid = await done(rights, "access")
    req = await rights.get(rid)
    assert req.status is Status.COMPLETE
    assert req.response == {"outcome": "exported", "files": 7, "recordings": 1, "calls": 2}
    assert oct(os.stat(req.export_path).st_mode & 0o777) == "0o600"
    zf, manifest = open_export(req.export_path)
    names = {f["path"] for f in manifest["files"]}
    assert names | {"manifest.json"} == set(zf.namelist())
    for f in manifest["files"]:
        data = zf.read(f["path"])
        assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["bytes"]
    doc = json.loads(zf.read("records.json"))
    jsonschema.validate(doc, schema())
    assert doc["subject"] == {"kind": "phone", "identifier": NUMBER}
    assert sorted(c["id"] for c in doc["calls"]) == sorted(seeded.calls)
    assert seeded.other_call not in zf.read("calls.csv").decode()
    [rec] = doc["recordings"]
    audio = zf.read(rec["file"])
    assert audio == seeded.wav
    with wave.open(io.BytesIO(audio)) as w:
        assert w.getnframes() / w.getframerate() == pytest.approx(rec["duration_s"]) == 1.5
    assert len(doc["consents"]) == 1
    assert "Recordings: 1" in zf.read("summary.txt").decode()
    actions = [a for (a,) in sqlite3.connect(privacy.cfg.database).execute(
        "SELECT action FROM audit_log")]  # fmt: skip
    assert {"subject.lookup", "recording.export", "subject.export", "request.complete"} <= set(
        actions
    )


def scan(paths: list[Path]) -> list[str]:
    hits = []
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for f in files:
            data = f.read_bytes()
            hits += [f"{f}: {n!r}" for n in NEEDLES if n in data]
    return hits


def vacuum(db: Path) -> None:
    con = sqlite3.connect(db)
    con.execute("VACUUM")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()


async def test_erasure_leaves_no_trace(
    env: tuple[Privacy, Rights], tmp_path: Path, logfile: Path
) -> None:
    privacy, rights = env
    seeded = await seed(privacy, tmp_path)
    await done(rights, "access")  # an export with her audio and name now exists too
    state = privacy.cfg.state_dir
    assert scan([state]), "the seed must put her data where the scan looks"
    rid = await done(rights, "erasure")
    req = await rights.get(rid)
    assert req.status is Status.COMPLETE and req.response["outcome"] == "erased"
    assert req.response["deleted"]["calls"] == 2
    await privacy.db.close()
    vacuum(privacy.cfg.database)
    assert scan([state, tmp_path / "spool", logfile]) == []
    con = sqlite3.connect(privacy.cfg.database)
    assert con.execute("SELECT id FROM calls").fetchall() == [(seeded.other_call,)]
    assert con.execute("SELECT COUNT(*) FROM consents").fetchone() == (0,)
    assert con.execute("SELECT COUNT(*) FROM erased_subjects").fetchone() == (1,)
    await privacy.db.open()
    assert (await privacy.audit.verify()).ok
    assert await privacy.subjects.items(privacy.subjects.parse(NUMBER)) == []


async def test_erasure_under_legal_hold_anonymises_and_says_why(
    env: tuple[Privacy, Rights], tmp_path: Path
) -> None:
    privacy, rights = env
    seeded = await seed(privacy, tmp_path)
    inbound, outbound = seeded.calls
    hold = await rights.holds.on_calls(
        [inbound], OP, reason="billing dispute 2026-17", owner="legal@example.com"
    )
    rid = await done(rights, "erasure")
    resp = (await rights.get(rid)).response
    assert resp["outcome"] == "erased_with_exceptions"
    kept = resp["kept_under_legal_hold"]
    assert kept["calls"] == 1 and kept["recordings"] == 1
    assert f"legal hold #{hold}" in kept["holds"][0] and "billing dispute" in kept["holds"][0]
    assert "anonymised" in kept["why"]
    await privacy.db.close()
    vacuum(privacy.cfg.database)
    # Number and name are gone from every row; the held audio stays (encrypted, key kept).
    assert scan([privacy.cfg.database]) == []
    con = sqlite3.connect(privacy.cfg.database)
    assert sorted(r[0] for r in con.execute("SELECT id FROM calls")) == sorted(
        [inbound, seeded.other_call]
    )
    assert con.execute(
        "SELECT calling_number, caller_name FROM calls WHERE id = ?", (inbound,)
    ).fetchone() == ("[erased]", "[erased]")
    assert (
        con.execute("SELECT COUNT(*) FROM recordings WHERE call_id = ?", (inbound,)).fetchone()[0]
        == 1
    )
    await privacy.db.open()
    items = await privacy.subjects.items(privacy.subjects.parse(NUMBER))
    assert {(i["item_type"]) for i in items} <= {"call", "recording"}
    assert outbound not in {i["item_id"] for i in items}


def _tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


async def test_export_on_a_full_disk_fails_clean_and_resumes(
    env: tuple[Privacy, Rights], tmp_path: Path
) -> None:
    privacy, _ = env
    await seed(privacy, tmp_path)
    small = tmp_path / "full"
    _tmpfs(small, "64k")
    try:
        (small / "filler").write_bytes(b"\0" * (60 * 1024 - 1))  # leave room for a header only
        rights = Rights(privacy, exports_dir=small / "exports")
        req = await rights.create("access", NUMBER, OP)
        await rights.attest(req.id, OP, "in person")
        with pytest.raises(RightsError, match=r"step 'export' failed .*No space left"):
            await rights.process(req.id, OP)
        failed = await rights.get(req.id)
        assert failed.status is Status.ERROR and failed.export_path == ""
        assert list((small / "exports").iterdir()) == []
        log = await rights.log(req.id)
        assert ("export", "error") in {(e["step"], e["outcome"]) for e in log}
        (small / "filler").unlink()
        ok = await rights.process(req.id, OP)  # resumes at the export step
        assert ok.status is Status.COMPLETE
        assert [e["step"] for e in await rights.log(req.id)].count("resolve") == 1
        zipfile.ZipFile(ok.export_path).testzip()
    finally:
        subprocess.run(["umount", str(small)], check=True)
