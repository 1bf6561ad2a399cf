"""Start the admin listener in the background (for `callvault demo`) and hand out first login.

On a provisioned box systemd runs `callvault admin serve`; the demo has no systemd, so it
starts the same command detached, records its pid, and reuses it when it is already up.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from appliance.admin.tls import ensure_certificate
from appliance.config import Config
from appliance.errors import CallvaultError

START_TIMEOUT_S = 60.0


def _pid_file(cfg: Config) -> Path:
    return cfg.state_dir / "admin.pid"


def _answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def url(cfg: Config) -> str:
    host = "localhost" if cfg.admin.bind in {"127.0.0.1", "::1"} else cfg.admin.bind
    return f"https://{host}:{cfg.admin.port}/"


def fingerprint(cfg: Config) -> str:
    cert_path, _ = cfg.admin.cert_paths(cfg.state_dir)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def ensure_running(cfg: Config) -> int:
    """The pid of a running admin listener for this config, started if needed."""
    host = "127.0.0.1" if cfg.admin.bind in {"0.0.0.0", "::", ""} else cfg.admin.bind  # noqa: S104 - bind-all mapped to loopback
    pid_file = _pid_file(cfg)
    if pid_file.is_file():
        pid = int(pid_file.read_text().strip() or 0)
        if pid and _alive(pid) and _answers(host, cfg.admin.port):
            return pid
    if _answers(host, cfg.admin.port):
        raise CallvaultError(
            f"port {cfg.admin.port} on {host} is taken by another program; set [admin] port"
        )
    ensure_certificate(cfg)
    log_path = cfg.state_dir / "admin.log"
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "appliance.cli", "admin", "serve"]
    if cfg.source is not None:
        argv[3:3] = ["--config", str(cfg.source)]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _answers(host, cfg.admin.port):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise CallvaultError(f"the admin listener did not start (log {log_path}):\n{tail}")
        time.sleep(0.2)
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def stop(cfg: Config) -> bool:
    pid_file = _pid_file(cfg)
    if not pid_file.is_file():
        return False
    pid = int(pid_file.read_text().strip() or 0)
    pid_file.unlink()
    if pid and _alive(pid):
        os.kill(pid, signal.SIGTERM)
        return True
    return False
