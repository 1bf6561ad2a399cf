"""`callvault doctor` checks that need no Asterisk: certificate, SIP OPTIONS, NTP, firewall,
exit codes and the CLI's JSON. (Against the real Asterisk: tests/integration/test_doctor.py.)"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import stat
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from appliance import cli
from appliance.admin.tls import generate
from appliance.config import Config, IpPeerConfig
from appliance.maint import doctor
from tests.privacy.conftest import make_cfg


def _finding(r: doctor.Report, check: str) -> doctor.Finding:
    return next(f for f in r.findings if f.check == check)


def test_exit_codes() -> None:
    r = doctor.Report()
    r.add("a", "one", "pass", "")
    assert r.exit_code == 0
    r.add("a", "two", "warn", "")
    assert r.exit_code == 3
    r.add("a", "three", "fail", "")
    assert r.exit_code == 1
    assert r.as_dict()["exit_code"] == 1


def test_certificate_valid_expiring_expired_missing(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    r = doctor.Report()
    doctor.check_certificate(cfg, r)
    assert _finding(r, "certificate").status == "warn"  # not generated yet
    cert, key = cfg.admin.cert_paths(cfg.state_dir)
    generate(cert, key, "127.0.0.1")
    now = dt.datetime.now(dt.UTC)
    for when, status in (
        (now, "pass"),
        (now + dt.timedelta(days=720), "warn"),
        (now + dt.timedelta(days=800), "fail"),
    ):
        r = doctor.Report()
        doctor.check_certificate(cfg, r, now=when)
        assert _finding(r, "certificate").status == status, when
    cert.write_text("not a certificate")
    r = doctor.Report()
    doctor.check_certificate(cfg, r)
    assert _finding(r, "certificate").status == "fail"


class _SipPeer:
    """A UDP SIP peer on loopback answering OPTIONS with 200 OK (the Via echoed)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seen: list[str] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(65535)
            except OSError:
                return
            text = data.decode()
            self.seen.append(text)
            via = next(x for x in text.split("\r\n") if x.startswith("Via:"))
            self.sock.sendto(f"SIP/2.0 200 OK\r\n{via}\r\n\r\n".encode(), addr)


def test_sip_options_reaches_a_peer_and_reports_a_dead_one() -> None:
    peer = _SipPeer()
    try:
        assert doctor.sip_options("127.0.0.1", peer.port) == "SIP/2.0 200 OK"
        assert peer.seen[0].startswith(f"OPTIONS sip:127.0.0.1:{peer.port} SIP/2.0")
    finally:
        peer.sock.close()
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises((OSError, TimeoutError)):
        doctor.sip_options("127.0.0.1", port, timeout=0.5)


async def test_trunks_without_peers_and_with_a_network_match(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    r = doctor.Report()
    await doctor.check_trunks(cfg, r)
    assert [f.status for f in r.findings] == ["pass"]
    cfg = replace(cfg, ip_peers=(IpPeerConfig(name="lan", match="10.9.0.0/24"),))
    r = doctor.Report()
    await doctor.check_trunks(cfg, r)
    assert "is a network" in r.findings[0].detail


def _fake_tool(bin_dir: Path, name: str, output: str, rc: int = 0) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}\nEOF\nexit {rc}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _only(bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Our fakes, plus the shell they need, and nothing else of the host's tools.
    monkeypatch.setenv("PATH", f"{bin_dir}:/nonexistent")
    for tool in ("sh", "cat"):
        target = bin_dir / tool
        if not target.exists():
            target.symlink_to(f"/bin/{tool}")


RULESET = """table inet callvault {
  chain input {
    type filter hook input priority filter; policy drop;
  }
}"""


def test_firewall_and_ntp_read_the_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    _fake_tool(bin_dir, "nft", RULESET)
    _fake_tool(bin_dir, "timedatectl", "yes")
    _only(bin_dir, monkeypatch)
    cfg = make_cfg(tmp_path)
    r = doctor.Report()
    doctor.check_firewall(cfg, r)
    doctor.check_ntp(r)
    assert _finding(r, "firewall").status == "pass"
    assert _finding(r, "NTP sync").status == "pass"

    _fake_tool(bin_dir, "nft", "table inet filter {\n}")
    _fake_tool(bin_dir, "timedatectl", "no")
    r = doctor.Report()
    doctor.check_firewall(cfg, r)  # not a sandbox config: a box without our rules fails
    doctor.check_ntp(r)
    assert _finding(r, "firewall").status == "fail"
    assert _finding(r, "NTP sync").status == "fail"
    assert "not synchronised" in _finding(r, "NTP sync").hint

    os.unlink(bin_dir / "nft")
    os.unlink(bin_dir / "timedatectl")
    r = doctor.Report()
    doctor.check_firewall(cfg, r)
    doctor.check_ntp(r)
    assert "nft is not installed" in _finding(r, "firewall").detail
    assert _finding(r, "NTP sync").status == "warn"
    assert "cannot tell" in _finding(r, "NTP sync").detail


def _config_file(tmp_path: Path) -> Path:
    path = tmp_path / "callvault.toml"
    path.write_text(
        'state_dir = "state"\n[asterisk]\nami_port = 1\nami_secret = "unused"\n'
        '[[lines]]\nname = "echo"\nextension = "900"\nkind = "echo"\n'
    )
    return path


def test_cli_json_fails_without_asterisk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = cli.main(["--config", str(_config_file(tmp_path)), "doctor", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == doc["exit_code"] == 1
    by_check = {f["check"]: f for f in doc["findings"]}
    assert by_check["AMI login"]["status"] == "fail"
    assert "start Asterisk" in by_check["AMI login"]["hint"]
    assert {"schema", "NTP sync", "firewall", "certificate", "GPU driver"} <= set(by_check)


def test_database_schema_findings(tmp_path: Path) -> None:
    import sqlite3

    cfg: Config = make_cfg(tmp_path)
    r = doctor.Report()
    doctor.check_database(cfg, r)
    assert _finding(r, "schema").status == "warn"  # no database yet
    cfg.database.parent.mkdir(parents=True)
    con = sqlite3.connect(cfg.database)
    con.execute("PRAGMA user_version = 9999")
    con.close()
    r = doctor.Report()
    doctor.check_database(cfg, r)
    assert _finding(r, "schema").status == "fail"
    assert "refusing to downgrade" in _finding(r, "schema").detail
