"""`callvault admin serve` as a real process: HTTPS with the generated certificate, tokens."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", "--config", str(conf), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    port = _free_port()
    conf = tmp_path / "callvault.toml"
    conf.write_text(
        f'state_dir = "{tmp_path / "state"}"\n'
        '[asterisk]\nami_secret = "unused"\n'
        f'[admin]\nbind = "127.0.0.1"\nport = {port}\n'
        '[[lines]]\nname = "reception"\nextension = "100"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "--config", str(conf), "admin", "serve"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    out = proc.stdout.read() if proc.stdout else ""
                    pytest.fail(f"admin serve did not come up: {out}")
                time.sleep(0.2)
        yield conf, port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_https_with_generated_certificate_and_token(served: tuple[Path, int]) -> None:
    conf, port = served
    state = conf.parent / "state"
    cert, key = state / "tls" / "admin.crt", state / "tls" / "admin.key"
    assert cert.is_file()
    assert oct(key.stat().st_mode & 0o777) == "0o600"

    made = _cli(conf, "admin", "token", "create", "auditor", "--scope", "audit:read")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("cvt_")

    ctx = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(base_url=f"https://localhost:{port}", verify=ctx, timeout=10) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        r = c.get("/api/v1/audit/verify", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        assert r.json()["ok"] is True
        assert "server" not in r.headers
        r = c.get("/api/v1/dnc", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 403
    # Plain HTTP to the TLS port is refused, not answered in clear.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)

    listed = _cli(conf, "admin", "token", "list")
    assert "auditor" in listed.stdout
    assert token.split("_")[2] not in listed.stdout  # the secret is never shown again
    assert _cli(conf, "admin", "token", "revoke", "auditor").returncode == 0
    with httpx.Client(base_url=f"https://localhost:{port}", verify=ctx, timeout=10) as c:
        r = c.get("/api/v1/audit/verify", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401
