"""Encrypted backups: create → verify, tampering, restore round trip, the master key kept out,
a full disk, and crypto-shredding that reaches archives made before an erasure."""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio

from appliance import cli
from appliance.config import Config
from appliance.privacy import Privacy, backup, stream, tombstones
from appliance.privacy.backup_archive import DB_MEMBER, MANIFEST, archive_key
from appliance.privacy.rights import Rights
from appliance.store import Database
from appliance.telephony.recordings import RecordingStore
from tests.privacy.conftest import RAW, make_cfg
from tests.privacy.rights_fixtures import NEEDLES, NUMBER, OP, done, seed
from tests.store.test_db import CDR

Env = tuple[Config, Privacy]


@pytest_asyncio.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    cfg = make_cfg(tmp_path)
    cfg = replace(cfg, backup=replace(cfg.backup, work_dir=tmp_path / "work"))
    (tmp_path / "work").mkdir()
    async with Database(cfg.database) as db:
        yield cfg, Privacy(cfg, db)


def master_key(cfg: Config) -> bytes:
    return cfg.privacy.master_key_path(cfg.state_dir).read_bytes()


def plaintext(cfg: Config, archive: Path) -> bytes:
    """The archive's tar, decrypted the way verify does."""
    key = master_key(cfg)
    with archive.open("rb") as fh:
        return b"".join(stream.decrypt_stream(fh, lambda salt: archive_key(key, salt)))


def reseal(cfg: Config, archive: Path, tar: bytes) -> None:
    """Encrypt `tar` into `archive` under this box's master key: a validly encrypted archive
    whose content is wrong, which only the manifest checks can catch."""
    salt = stream.new_salt()
    with archive.open("wb") as fh:
        stream.encrypt_stream(io.BytesIO(tar), fh, archive_key(master_key(cfg), salt), salt)


def members(tar: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        return {m.name: m for m in tf.getmembers()}


def scan(paths: list[Path]) -> list[str]:
    hits = []
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()]
        for f in files:
            data = f.read_bytes()
            hits += [f"{f}: {n!r}" for n in NEEDLES if n in data]
    return hits


def counts(db: Path) -> dict[str, int]:
    con = sqlite3.connect(db)
    names = [
        r[0]
        for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        if not r[0].startswith("sqlite_")
    ]
    out = {n: con.execute(f'SELECT COUNT(*) FROM "{n}"').fetchone()[0] for n in names}
    con.close()
    return out


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


async def test_create_verifies_counts_and_checksums(env: Env, tmp_path: Path) -> None:
    cfg, privacy = env
    await seed(privacy, tmp_path)
    created = await backup.create(cfg)
    report = created.report
    assert report.ok, report.failures
    names = [c.name for c in report.checks]
    assert names == [
        "archive decrypts", "manifest", "checksums", "database integrity", "schema version",
        "row counts", "keys", "erasures re-applied",
    ]  # fmt: skip
    by_name = {c.name: c for c in report.checks}
    assert by_name["checksums"].detail.startswith("2 of 2 files")
    manifest = report.manifest
    assert manifest["tables"] == counts(cfg.database)
    assert manifest["tables"]["calls"] == 3 and manifest["tables"]["recordings"] == 1
    assert manifest["kek_id"] and manifest["appliance_version"]
    [rec] = [f for f in manifest["files"] if f["path"].startswith("recordings/")]
    stored = next(cfg.recordings_dir.rglob("*.cvae"))
    assert rec["sha256"] == hashlib.sha256(stored.read_bytes()).hexdigest()
    # One file, 0600, encrypted as a whole: nothing readable in it.
    assert oct(created.archive.stat().st_mode & 0o777) == "0o600"
    assert scan([cfg.backup.dir]) == []
    [listed] = backup.list_archives(cfg)
    assert listed.path == created.archive and listed.verified and listed.verified["ok"]
    assert list((tmp_path / "work").iterdir()) == []  # no snapshot or scratch left behind


async def test_master_key_never_in_an_archive(env: Env, tmp_path: Path) -> None:
    cfg, privacy = env
    await seed(privacy, tmp_path)
    created = await backup.create(cfg)
    key = master_key(cfg)
    assert len(key) == 32
    tar = plaintext(cfg, created.archive)
    assert created.archive.read_bytes().count(key) == 0
    assert tar.count(key) == 0  # nor inside, where the decrypted database is
    assert not any("keys" in name for name in members(tar))


async def test_one_tampered_byte_fails_and_is_named(env: Env, tmp_path: Path) -> None:
    cfg, privacy = env
    await seed(privacy, tmp_path)
    created = await backup.create(cfg)
    tar = plaintext(cfg, created.archive)
    db = members(tar)[DB_MEMBER]
    # A byte in the middle of the database member, mapped to its place in the cvae1 stream.
    plain_at = db.offset_data + db.size // 2
    chunk = plain_at // stream.DEFAULT_CHUNK
    record = stream.DEFAULT_CHUNK + 12 + 16
    at = stream.HEADER.size + chunk * record + 12 + plain_at % stream.DEFAULT_CHUNK
    data = bytearray(created.archive.read_bytes())
    data[at] ^= 0x01
    created.archive.write_bytes(bytes(data))
    report = await backup.verify(cfg, created.archive.name)
    assert not report.ok
    [failure] = report.failures
    assert failure.name == "archive decrypts"
    assert f"chunk {chunk} failed authentication" in failure.detail
    assert f"while reading {DB_MEMBER}" in failure.detail
    [listed] = backup.list_archives(cfg)
    assert listed.verified == {"at": pytest.approx(listed.verified["at"]), "ok": False,
                               "failed": ["archive decrypts"]}  # fmt: skip


async def test_wrong_content_under_a_valid_key_is_named(env: Env, tmp_path: Path) -> None:
    cfg, privacy = env
    await seed(privacy, tmp_path)
    created = await backup.create(cfg)
    tar = bytearray(plaintext(cfg, created.archive))
    info = members(bytes(tar))
    [rec_name] = [n for n in info if n.startswith("recordings/")]
    tar[info[rec_name].offset_data + 100] ^= 0xFF
    man = info[MANIFEST]
    doc = json.loads(tar[man.offset_data : man.offset_data + man.size])
    doc["tables"]["calls"] += 1
    new = json.dumps(doc).encode().ljust(man.size)  # same length: the tar stays well formed
    tar[man.offset_data : man.offset_data + man.size] = new
    reseal(cfg, created.archive, bytes(tar))
    report = await backup.verify(cfg, created.archive)
    failed = {c.name: c.detail for c in report.failures}
    assert set(failed) == {f"file {rec_name}", "checksums", "row counts"}
    assert "the manifest says" in failed[f"file {rec_name}"]
    assert failed["checksums"].startswith("1 of 2 files")
    assert failed["row counts"] == "calls: 3 rows, manifest 4"


async def test_other_master_key_is_refused_clearly(env: Env, tmp_path: Path) -> None:
    cfg, privacy = env
    await seed(privacy, tmp_path)
    created = await backup.create(cfg)
    key_file = cfg.privacy.master_key_path(cfg.state_dir)
    key_file.write_bytes(os.urandom(32))
    report = await backup.verify(cfg, created.archive)
    [failure] = report.failures
    assert failure.name == "master key" and "made under master key" in failure.detail
    created.archive.with_name(created.archive.name + ".json").unlink()  # no hint: still caught
    report = await backup.verify(cfg, created.archive)
    assert [c.name for c in report.failures] == ["archive decrypts"]
    assert "chunk 0 failed authentication (wrong key" in report.failures[0].detail


async def test_restore_round_trip_rows_and_playable_audio(env: Env, tmp_path: Path) -> None:
    cfg, privacy = env
    seeded = await seed(privacy, tmp_path)
    created = await backup.create(cfg)
    before = counts(cfg.database)
    # Life goes on after the backup: a new call, and the recording file goes missing.
    await privacy.subjects.add_cdr(replace(CDR, call_id="1700000009.1", uniqueid="1700000009.1"))
    recording = next(cfg.recordings_dir.rglob("*.cvae"))
    recording.unlink()
    await privacy.db.close()
    done_ = await backup.restore(cfg, created.archive.name)
    assert done_.reapplied == 0 and done_.files == 2
    after = counts(cfg.database)
    assert after.pop("audit_log") == before.pop("audit_log") + 1  # the restore, audited
    assert after.pop("keyring") == before.pop("keyring") + 1  # its first audit row's key
    assert after == before
    assert done_.aside.name.startswith("state.before-restore-")
    assert (done_.aside / cfg.database.name).is_file()
    assert not list(cfg.state_dir.glob(".restore-*"))
    async with Database(cfg.database) as db:
        restored = Privacy(cfg, db)
        assert (await restored.audit.verify()).ok
        [row] = await db.recordings()
        store = RecordingStore(tmp_path / "spool", cfg.recordings_dir, db, restored)
        audio = b"".join([c async for c in store.open_recording(row, actor=OP, purpose="test")])
        assert audio == seeded.wav
        assert [c.id for c in await db.calls()].count("1700000009.1") == 0


async def test_restore_refused_while_the_database_is_open(env: Env, tmp_path: Path) -> None:
    cfg, privacy = env
    await seed(privacy, tmp_path)
    created = await backup.create(cfg)
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c",
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1]); c.execute('SELECT 1').fetchall()\n"
        "print('open', flush=True); time.sleep(60)", str(cfg.database),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and await holder.stdout.readline() == b"open\n"
        digest = hashlib.sha256(cfg.database.read_bytes()).hexdigest()
        with pytest.raises(
            backup.BackupError, match=rf"appliance is running: process {holder.pid}"
        ):
            await backup.restore(cfg, created.archive)
        assert hashlib.sha256(cfg.database.read_bytes()).hexdigest() == digest
        assert not list(cfg.state_dir.glob("state.before-restore-*"))
    finally:
        holder.kill()
        await holder.wait()


def _tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


async def test_full_disk_during_create_leaves_nothing(env: Env, tmp_path: Path) -> None:
    """A real full file system (a 64 KiB tmpfs as backup.dir), not a simulated error."""
    cfg, privacy = env
    await seed(privacy, tmp_path)
    small = tmp_path / "full"
    _tmpfs(small, "64k")
    try:
        cfg = replace(cfg, backup=replace(cfg.backup, dir=small))
        db_before = hashlib.sha256(cfg.database.read_bytes()).hexdigest()
        files_before = tree_digest(cfg.recordings_dir)
        with pytest.raises(
            backup.BackupError, match=r"no space left in .*partial archive was removed"
        ):
            await backup.create(cfg)
        assert [p.name for p in small.iterdir()] == [".lock"]
        assert list((tmp_path / "work").iterdir()) == []
        assert hashlib.sha256(cfg.database.read_bytes()).hexdigest() == db_before
        assert tree_digest(cfg.recordings_dir) == files_before
    finally:
        subprocess.run(["umount", str(small)], check=True)


async def test_read_only_state_dir_with_the_appliance_stopped(env: Env, tmp_path: Path) -> None:
    """What callvault-backup.service sees: the state directory mounted read-only, and with the
    appliance stopped no -wal/-shm files SQLite could use (nor create) for a WAL reader."""
    cfg, privacy = env
    await seed(privacy, tmp_path)
    await privacy.db.close()
    assert not cfg.database.with_name(cfg.database.name + "-wal").exists()
    cfg = replace(cfg, backup=replace(cfg.backup, dir=tmp_path / "media"))
    state = str(cfg.state_dir)
    subprocess.run(["mount", "--bind", state, state], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", state], check=True)
        with pytest.raises(OSError, match="Read-only file system"):
            (cfg.state_dir / "probe").touch()
        created = await backup.create(cfg)
    finally:
        subprocess.run(["umount", state], check=True)
    assert created.report.ok, created.report.failures
    assert created.files == 2 and created.report.manifest["tables"]["calls"] == 3


async def test_erasure_after_backup_reaches_the_restored_copy(env: Env, tmp_path: Path) -> None:
    """The erasure completeness test's backup leg: seed her, back up, erase her, restore the
    backup; the restored database (VACUUMed), the recordings tree and the key ring hold no
    trace of her number, name or audio, and her data key is gone."""
    cfg, privacy = env
    seeded = await seed(privacy, tmp_path)
    created = await backup.create(cfg)
    assert scan([cfg.state_dir]), "the seed must put her where the scan looks"
    await done(Rights(privacy), "erasure")
    [tomb] = tombstones.read(tombstones.journal_path(cfg))
    subject = await privacy.keyring.blind_index(privacy.subjects.parse(NUMBER))
    assert tomb.blind_index == subject and tomb.request_id == 1
    # The archive still holds her, encrypted: a restore without the journal would bring her
    # back (with her data key, which the master key opens).
    assert NEEDLES[1] in plaintext(cfg, created.archive)
    rehearsal = await backup.verify(cfg, created.archive)
    assert rehearsal.ok
    assert {c.name: c.detail for c in rehearsal.checks}["erasures re-applied"].startswith("1 ")
    await privacy.db.close()
    restored = await backup.restore(cfg, created.archive)
    assert restored.reapplied == 1
    assert scan([cfg.database, cfg.recordings_dir, cfg.state_dir / "keys", cfg.backup.dir]) == []
    assert not list(cfg.recordings_dir.rglob("*.cvae"))
    con = sqlite3.connect(cfg.database)
    assert con.execute("SELECT id FROM calls").fetchall() == [(seeded.other_call,)]
    assert con.execute(
        "SELECT COUNT(*) FROM subjects WHERE blind_index = ?", (subject,)
    ).fetchone() == (0,)
    assert con.execute("SELECT COUNT(*) FROM erased_subjects").fetchone() == (1,)
    con.close()
    async with Database(cfg.database) as db:
        again = Privacy(cfg, db)
        assert await again.subjects.items(again.subjects.parse(NUMBER)) == []
        assert (await again.audit.verify()).ok
        actions = [r["action"] for r in await db.audit_rows()]
        assert actions[-2:] == ["request.complete", "backup.restore"]


async def test_a_number_that_called_again_keeps_its_new_data(env: Env, tmp_path: Path) -> None:
    """Erased, then she calls again (a new subject), then a backup: the tombstone predates her
    new subject, so restoring that backup keeps the new call."""
    cfg, privacy = env
    await seed(privacy, tmp_path)
    await done(Rights(privacy), "erasure")
    back = replace(CDR, call_id="1700000010.1", uniqueid="1700000010.1", calling_number=NUMBER)
    await privacy.subjects.add_cdr(back)
    created = await backup.create(cfg)
    assert {c.name: c.detail for c in created.report.checks}["erasures re-applied"].startswith("0 ")
    await privacy.db.close()
    restored = await backup.restore(cfg, created.archive)
    assert restored.reapplied == 0
    con = sqlite3.connect(cfg.database)
    assert ("1700000010.1",) in con.execute("SELECT id FROM calls").fetchall()


def test_journal_skips_a_torn_line_and_rejects_a_corrupt_one(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "erasures.jsonl"
    tombstones.append(path, b"\x01" * 32, 10.0, 1)
    with path.open("ab") as fh:
        fh.write(b'{"blind_index":"0202')  # a crash mid-write
    tombstones.append(path, b"\x03" * 32, 5.0, None)
    got = tombstones.read(path)
    assert [(t.blind_index[:1], t.at, t.request_id) for t in got] == [
        (b"\x03", 5.0, None), (b"\x01", 10.0, 1),
    ]  # fmt: skip
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    path.write_bytes(path.read_bytes() + b'{"blind_index": 7}\n')
    with pytest.raises(tombstones.JournalError, match=r"line 4: not a tombstone"):
        tombstones.read(path)


async def test_prune_keeps_the_newest_verified(env: Env, tmp_path: Path) -> None:
    cfg, privacy = env
    await seed(privacy, tmp_path)
    day = 86400.0
    made = [(await backup.create(cfg, clock=lambda d=d: 1.8e9 + d * day)).archive for d in range(3)]
    assert [a.path for a in backup.list_archives(cfg)] == made
    assert backup.prune(cfg, keep=4) == []  # fewer verified than asked: nothing goes
    assert backup.prune(cfg, keep=2) == [made[0]]
    assert not made[0].exists() and not made[0].with_name(made[0].name + ".json").exists()
    assert [a.path for a in backup.list_archives(cfg)] == made[1:]


def _toml(tmp_path: Path) -> Path:
    lines = [
        f'state_dir = "{tmp_path / "state"}"',
        "[asterisk]", f'ami_secret = "{RAW["asterisk"]["ami_secret"]}"',  # type: ignore[index]
        "[backup]", "keep = 1", f'work_dir = "{tmp_path / "work"}"',
        "[[lines]]", 'name = "reception"', 'extension = "100"',
        "[[extensions]]", 'number = "201"', 'name = "Desk"',
        "[[extensions]]", 'number = "202"', 'name = "Office"',
    ]  # fmt: skip
    path = tmp_path / "callvault.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_run_list_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = str(_toml(tmp_path))
    (tmp_path / "work").mkdir()

    async def seeded() -> None:
        cfg = make_cfg(tmp_path)
        async with Database(cfg.database) as db:
            await seed(Privacy(cfg, db), tmp_path)

    asyncio.run(seeded())
    assert cli.main(["--config", conf, "backup", "run"]) == 0
    assert cli.main(["--config", conf, "backup", "run"]) == 0  # keep = 1: the first goes
    out = capsys.readouterr().out
    assert "verification passed" in out and "pruned callvault-" in out
    assert cli.main(["--config", conf, "backup", "list", "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert entry["verified"]["ok"] is True
    assert cli.main(["--config", conf, "backup", "verify"]) == 0
    Path(entry["archive"]).write_bytes(Path(entry["archive"]).read_bytes()[:-1])
    assert cli.main(["--config", conf, "backup", "verify"]) == 1
    assert "FAIL" in capsys.readouterr().out
    assert cli.main(["--config", conf, "backup", "restore", "nosuch.cvbk"]) == 2
    assert "no archive nosuch.cvbk" in capsys.readouterr().err


async def test_one_backup_command_at_a_time(env: Env, tmp_path: Path) -> None:
    cfg, privacy = env
    await seed(privacy, tmp_path)
    cfg.backup.dir.mkdir(parents=True)
    fd = os.open(cfg.backup.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a running `backup run` holds it
        with pytest.raises(backup.BackupError, match="another backup command is running"):
            await backup.create(cfg)
    finally:
        os.close(fd)
    assert (await backup.create(cfg)).report.ok
