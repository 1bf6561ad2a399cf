"""The key hierarchy: master key file, passphrase mode, rotation, crash recovery."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from appliance.privacy import Identifier, Privacy
from appliance.privacy.master import KeyFile, MasterKeyError
from appliance.store import Database
from tests.privacy.conftest import make_cfg

PHONE = Identifier("phone", "+46701234567")


async def test_master_key_file_is_created_private_on_first_use(privacy: Privacy) -> None:
    path = privacy.cfg.state_dir / "keys" / "master.key"
    assert not path.exists()
    await privacy.subjects.ensure(PHONE)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert len(path.read_bytes()) == 32


async def test_a_world_readable_key_file_is_refused(privacy: Privacy) -> None:
    await privacy.subjects.ensure(PHONE)
    path = privacy.cfg.state_dir / "keys" / "master.key"
    path.chmod(0o644)
    privacy.keyring.forget()
    with pytest.raises(MasterKeyError, match="readable by others"):
        await privacy.subjects.ensure(PHONE)


async def test_the_wrong_master_key_is_named(privacy: Privacy, tmp_path: Path) -> None:
    await privacy.subjects.ensure(PHONE)
    other = Privacy(privacy.cfg, privacy.db, KeyFile(tmp_path / "other.key"))
    with pytest.raises(MasterKeyError, match="does not open this database"):
        await other.subjects.ensure(PHONE)


async def test_rotation_rewraps_and_keeps_data_readable(privacy: Privacy) -> None:
    sid = await privacy.subjects.ensure(PHONE)
    bi_before = await privacy.keyring.blind_index(PHONE)
    src = privacy.cfg.state_dir / "plain.bin"
    src.write_bytes(os.urandom(5000))
    dest = privacy.cfg.state_dir / "enc.bin"
    await privacy.files.encrypt(src, dest, [sid], "ctx")
    key_file = privacy.cfg.state_dir / "keys" / "master.key"
    old_key = key_file.read_bytes()

    r = await privacy.keyring.rotate()
    assert r.old_kek != r.new_kek and r.rewrapped >= 2
    assert key_file.read_bytes() != old_key
    assert not (key_file.parent / "master.key.new").exists()

    # A fresh process (new Keyring) opens everything with the new key file only.
    fresh = Privacy(privacy.cfg, privacy.db)
    assert await fresh.keyring.blind_index(PHONE) == bi_before
    got = b"".join([c async for c in fresh.files.decrypt(dest, [sid], "ctx")])
    assert got == src.read_bytes()
    con = sqlite3.connect(privacy.cfg.database)
    assert {r[0] for r in con.execute("SELECT kek_id FROM subjects")} == {r.new_kek}
    # The old master key opens nothing any more.
    stale = privacy.cfg.state_dir / "old.key"
    stale.write_bytes(old_key)
    stale.chmod(0o600)
    with pytest.raises(MasterKeyError):
        await Privacy(privacy.cfg, privacy.db, KeyFile(stale)).keyring.master()


async def test_a_rotation_interrupted_after_the_commit_is_finished_on_load(
    privacy: Privacy,
) -> None:
    await privacy.subjects.ensure(PHONE)
    source = privacy.keyring.source
    assert isinstance(source, KeyFile)
    commit = source.commit
    source_commit_called = []
    object.__setattr__(source, "commit", lambda: source_commit_called.append(1))  # "crash"
    try:
        await privacy.keyring.rotate()
    finally:
        object.__setattr__(source, "commit", commit)
    assert (source.path.parent / "master.key.new").exists()
    fresh = Privacy(privacy.cfg, privacy.db)
    assert await fresh.subjects.ensure(PHONE) >= 1
    assert not (source.path.parent / "master.key.new").exists()


async def test_a_server_holding_the_old_key_follows_a_rotation(privacy: Privacy) -> None:
    sid = await privacy.subjects.ensure(PHONE)
    other_process = Privacy(privacy.cfg, privacy.db)
    await other_process.keyring.master()
    await privacy.keyring.rotate()
    # Stale cache: unwrapping and drafting both notice and reload.
    assert len(await other_process.keyring.subject_key(sid)) == 32
    stale = Privacy(privacy.cfg, privacy.db)
    stale.keyring._master = (b"\0" * 32, "stale")  # as if loaded before the rotation
    stale.keyring._system["index"] = await privacy.keyring.system_key("index")
    new_id = await stale.subjects.ensure(Identifier("phone", "+46701234568"))
    row = await privacy.db.subject_key(new_id)
    assert row is not None and row[2] == (await privacy.keyring.master())[1]


async def test_passphrase_mode(tmp_path: Path) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text("correct horse battery staple\n")
    cfg = make_cfg(tmp_path, key_source="passphrase", passphrase_file=str(secret))
    async with Database(cfg.database) as db:
        p = Privacy(cfg, db)
        sid = await p.subjects.ensure(PHONE)
        assert not (cfg.state_dir / "keys" / "master.key").exists()
        assert (cfg.state_dir / "keys" / "master.scrypt").exists()
        assert len(await Privacy(cfg, db).keyring.subject_key(sid)) == 32
        secret.write_text("a different passphrase\n")
        with pytest.raises(MasterKeyError, match="wrong key file or passphrase"):
            await Privacy(cfg, db).keyring.subject_key(sid)
        secret.write_text("correct horse battery staple\n")
        new = tmp_path / "new-passphrase"
        new.write_text("another long passphrase")
        await p.keyring.rotate(new.read_bytes())
        secret.write_text("another long passphrase")
        assert len(await Privacy(cfg, db).keyring.subject_key(sid)) == 32
