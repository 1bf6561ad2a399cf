from __future__ import annotations

import time
from dataclasses import replace

import pytest

from appliance.pbx import admin as pa
from appliance.pbx.apply import ApplyError, PbxManager, new_password
from appliance.pbx.render import DIALPLAN_FILE, PJSIP_FILE
from appliance.pbx.security import SipGuard, remote_ip
from appliance.privacy import Actor
from tests.pbx.conftest import sample

ADMIN = Actor(name="user:it", role="admin")


def _etc(manager: PbxManager) -> object:
    return manager.cfg.asterisk.host_path(manager.cfg.asterisk.config_dir)


async def test_apply_writes_records_and_seals_secrets(manager: PbxManager) -> None:
    pw = new_password()
    applied = await manager.apply(sample(pw), ADMIN, "first")
    assert applied.version == 1 and set(applied.changed_files) == {
        "pjsip_pbx.conf", "extensions_pbx.conf", "voicemail.conf"
    }  # fmt: skip
    assert applied.reloaded == ()  # no Asterisk here: written, live at its next start
    etc = manager.cfg.asterisk.host_path(manager.cfg.asterisk.config_dir)
    assert f"password = {pw}" in (etc / PJSIP_FILE).read_text()
    # At rest the passwords are sealed: neither appears in the stored snapshot.
    row = await manager.db.pbx_current()
    assert row is not None
    assert pw not in row["snapshot"] and "trunk-secret-1" not in row["snapshot"]
    version, back = await manager.current()
    assert version == 1 and back == sample(pw)
    actions = [(r["action"], r["object"]) for r in await manager.db.audit_rows()]
    assert ("pbx.apply", "pbx:v1") in actions


async def test_refused_change_changes_nothing_and_is_audited(manager: PbxManager) -> None:
    await manager.apply(sample(), ADMIN, "first")
    etc = manager.cfg.asterisk.host_path(manager.cfg.asterisk.config_dir)
    before = (etc / DIALPLAN_FILE).read_text()
    _, pbx = await manager.current()
    bad = replace(pbx, routes=(replace(pbx.routes[0], destination="extension:399"),))
    with pytest.raises(ApplyError, match="no enabled extension 399"):
        await manager.apply(bad, ADMIN, "bad route")
    assert (etc / DIALPLAN_FILE).read_text() == before
    assert (await manager.current())[0] == 1
    refused = [r for r in await manager.db.audit_rows() if r["action"] == "pbx.refused"]
    assert refused and "no enabled extension 399" in refused[0]["detail"]


async def test_rollback_restores_previous_version(manager: PbxManager) -> None:
    await manager.apply(sample(), ADMIN, "first")
    _, pbx = await manager.current()
    moved = replace(pbx, routes=(replace(pbx.routes[0], destination="line:echo"),))
    second = await manager.apply(moved, ADMIN, "to echo")
    assert second.changed_files == ("extensions_pbx.conf",)  # only the dialplan changed
    back = await manager.rollback(ADMIN)
    assert back.version == 3 and back.note == "rollback to v1"
    assert (await manager.current())[1] == pbx
    etc = manager.cfg.asterisk.host_path(manager.cfg.asterisk.config_dir)
    assert "n(open),Goto(callvault-extensions,301,1)" in (etc / DIALPLAN_FILE).read_text()
    with pytest.raises(ApplyError, match="no version 99"):
        await manager.rollback(ADMIN, 99)


async def test_admin_save_generates_password_once_and_keeps_it(manager: PbxManager) -> None:
    await manager.apply(sample(), ADMIN, "first")
    _, once = await pa.save(manager, "extension", {"number": "302", "name": "Desk 2"}, ADMIN)
    assert once is not None and len(once) >= 24
    _, again = await pa.save(manager, "extension", {"number": "302", "name": "Renamed"}, ADMIN)
    assert again is None
    _, pbx = await manager.current()
    ext = next(e for e in pbx.extensions if e.number == "302")
    assert ext.password == once and ext.name == "Renamed"
    with pytest.raises(Exception, match="generated, not chosen"):
        await pa.save(manager, "extension", {"number": "303", "name": "x", "password": "a"}, ADMIN)
    assert pa.view(pbx)["extensions"][0]["password"] == "set"
    await pa.set_enabled(manager, "extension", "302", False, ADMIN)
    etc = manager.cfg.asterisk.host_path(manager.cfg.asterisk.config_dir)
    assert "[302]" not in (etc / PJSIP_FILE).read_text()


async def test_guard_blocks_after_threshold_within_window(manager: PbxManager) -> None:
    await manager.apply(sample(), ADMIN, "first")
    guard = SipGuard(manager)
    await guard.refresh_settings()
    ev = {"Event": "ChallengeResponseFailed", "RemoteAddress": "IPV4/UDP/203.0.113.9/5062"}
    for _ in range(9):
        guard.on_event(ev)
    guard.on_event({"Event": "InvalidPassword", "RemoteAddress": "IPV4/UDP/198.51.100.1/5060"})
    guard.on_event({"Event": "SuccessfulAuth", "RemoteAddress": "IPV4/UDP/203.0.113.9/5062"})
    assert await manager.db.pbx_blocks() == []
    guard.on_event(ev)
    for task in list(guard._tasks):
        await task
    blocks = await manager.db.pbx_blocks(active_at=time.time())
    assert [b["address"] for b in blocks] == ["203.0.113.9"] and blocks[0]["failures"] == 10
    etc = manager.cfg.asterisk.host_path(manager.cfg.asterisk.config_dir)
    assert "[cvpbx-blocked]\ntype = acl\ndeny = 203.0.113.9" in (etc / PJSIP_FILE).read_text()
    assert await guard.unblock("203.0.113.9", ADMIN)
    assert "cvpbx-blocked" not in (etc / PJSIP_FILE).read_text()
    actions = {r["action"] for r in await manager.db.audit_rows()}
    assert {"pbx.sip_block", "pbx.sip_unblock"} <= actions


def test_remote_ip() -> None:
    assert remote_ip("IPV4/UDP/192.0.2.7/5060") == "192.0.2.7"
    assert remote_ip("IPV6/UDP/2001:db8::1/5060") == "2001:db8::1"
    assert remote_ip("garbage") is None
    assert len({new_password() for _ in range(50)}) == 50


async def test_provisioning_file_once_and_lan_only(manager: PbxManager) -> None:
    import asyncio

    from appliance.pbx.provisioning import ProvisioningServer

    await manager.apply(sample(), ADMIN, "first")
    _, once = await pa.save(
        manager, "extension", {"number": "302", "name": "Desk 2", "mac": "001565aabbcc"}, ADMIN
    )
    server = ProvisioningServer(manager, "127.0.0.1", 0)
    port = await server.start()

    async def fetch(path: str) -> tuple[int, str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.0\r\nHost: box\r\n\r\n".encode())
        data = (await reader.read()).decode()
        writer.close()
        return int(data.split()[1]), data.split("\r\n\r\n", 1)[1]

    try:
        status, body = await fetch("/001565aabbcc.cfg")
        assert status == 200 and f"account.1.password = {once}" in body
        assert "account.1.sip_server.1.address = 127.0.0.1" in body
        assert (await fetch("/001565aabbcc.cfg"))[0] == 410  # the password went out once
        assert (await fetch("/0015650000ff.cfg"))[0] == 404
        assert (await fetch("/../etc/passwd"))[0] == 404
        # Off the LAN: refused (the LAN here no longer includes loopback).
        _, pbx = await manager.current()
        await manager.apply(
            replace(pbx, settings=replace(pbx.settings, lan=("10.0.0.0/8",))), ADMIN, "lan"
        )
        await pa.save(
            manager, "extension", {"number": "302", "name": "Desk 2", "mac": "001565aabbcc",
                                   "regenerate_password": True}, ADMIN,
        )  # fmt: skip
        assert (await fetch("/001565aabbcc.cfg"))[0] == 403
    finally:
        await server.stop()
    actions = [r["action"] for r in await manager.db.audit_rows()]
    assert "pbx.provision" in actions and "pbx.provision_refused" in actions


async def test_no_asterisk_config_dir_no_write(manager: PbxManager, tmp_path: object) -> None:
    import shutil

    etc = manager.cfg.asterisk.host_path(manager.cfg.asterisk.config_dir)
    shutil.rmtree(etc)
    with pytest.raises(ApplyError, match=r"config directory .* is missing"):
        await manager.apply(sample(), ADMIN, "first")
    assert not etc.exists() and await manager.db.pbx_current() is None


async def test_settings_change_is_checked(manager: PbxManager) -> None:
    await manager.apply(sample(), ADMIN, "first")
    applied, _ = await pa.save(
        manager, "settings", {"fail_threshold": 5, "lan": ["10.1.0.0/16"]}, ADMIN
    )
    _, pbx = await manager.current()
    assert pbx.settings.fail_threshold == 5 and applied.version == 2
    etc = manager.cfg.asterisk.host_path(manager.cfg.asterisk.config_dir)
    assert "permit = 10.1.0.0/16" in (etc / PJSIP_FILE).read_text()
    with pytest.raises(ApplyError, match=r"settings\.lan"):
        await pa.save(manager, "settings", {"lan": ["not-a-net"]}, ADMIN)
