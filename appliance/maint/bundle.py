"""`callvault support-bundle`: what the support desk needs, without what it must not see.

One tar.gz (0600) the admin sends on by their own means (nothing leaves the box by itself):

    versions.json     Callvault, Python, OS, Asterisk and the key libraries
    doctor.json/.txt  `callvault doctor` (no test call: the bundle adds no CDR)
    config.json       the parsed TOML, secret values replaced, the rest scrubbed
    logs/…            journald for the appliance's units (when journalctl exists), Asterisk's
                      own log files (not its CDR files), tail-limited

Every text passes `Scrubber` before it is written: the secrets the box holds (config values
and `<state_dir>/secrets/*`), the names and numbers in the config and in the database's call
records (matched as given, case-insensitively), then patterns — phone numbers
(`phonenumbers` in the box's region), long digit runs, e-mail addresses, SIP URI users,
caller-ID display names. The finished members are scanned once more for every known value,
and a bundle that still holds one is not written.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import phonenumbers
from rich.console import Console

from appliance import __version__
from appliance.config import Config
from appliance.errors import CallvaultError

LOG_TAIL_BYTES = 4 << 20
JOURNAL_UNITS = ("callvault", "callvault-admin", "callvault-backup", "asterisk")
_SECRET_KEY = re.compile(r"(secret|password|passphrase|token|key)$", re.I)
_PACKAGES = (
    "aiosqlite",
    "panoramisk",
    "litestar",
    "faster-whisper",
    "llama-cpp-python",
    "piper-tts",
    "onnxruntime",
    "ctranslate2",
    "cryptography",
    "pjsua2",
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_DIGITS = re.compile(r"\+?\d{7,}")
# Numbers written in groups ("07911 123456", "070-123 45 67") in any country's style.
_GROUPED = re.compile(r"(?<![\w:.+-])\+?\(?\d{2,}\)?(?:[ -]\(?\d{2,}\)?){1,5}(?![\w:.-])")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SIP_USER = re.compile(r"\b(sips?:|tel:)([^@;>\s\"']+)(@)?", re.I)
_DISPLAY = re.compile(r"\"[^\"\r\n]{1,80}\"(\s*<(?:sips?|tel):)", re.I)
_CID_FIELD = re.compile(
    r"((?:CallerIDName|ConnectedLineName|CallerIDNum|ConnectedLineNum|caller_?name|"
    r"CALLERID\((?:name|num)\))\s*[:=]\s*)([^\r\n,|]*)",
    re.I,
)


class BundleError(CallvaultError):
    pass


class Scrubber:
    """Removes known values and personal-data patterns from text."""

    def __init__(self, region: str, known: Iterable[str]) -> None:
        self.region = region
        # Longest first: a name containing another is replaced whole.
        words = sorted({k.strip() for k in known if len(k.strip()) >= 3}, key=len, reverse=True)
        self.known = words
        self._known_re = re.compile("|".join(re.escape(w) for w in words), re.I) if words else None
        self.count = 0

    def _sub(self, pattern: re.Pattern[str], repl: Any, text: str) -> str:
        out, n = pattern.subn(repl, text)
        self.count += n
        return out

    def scrub(self, text: str) -> str:
        if self._known_re is not None:
            text = self._sub(self._known_re, "<redacted>", text)
        text = self._sub(_CID_FIELD, r"\1<redacted>", text)
        text = self._sub(_DISPLAY, r'"<name>"\1', text)
        text = self._sub(_SIP_USER, lambda m: f"{m[1]}<user>{m[3] or ''}", text)
        text = self._sub(_EMAIL, "<email>", text)
        text = self._phones(text)
        text = self._sub(_GROUPED, self._grouped, text)
        return self._sub(_DIGITS, "<number>", text)

    @staticmethod
    def _grouped(m: re.Match[str]) -> str:
        found = m[0]
        digits = sum(c.isdigit() for c in found)
        return found if digits < 7 or _ISO_DATE.fullmatch(found) else "<number>"

    def _phones(self, text: str) -> str:
        out, last = [], 0
        for match in phonenumbers.PhoneNumberMatcher(text, self.region):
            out += [text[last : match.start], "<phone>"]
            last = match.end
            self.count += 1
        return "".join(out) + text[last:]

    def leaks(self, text: str) -> list[str]:
        """Known values still present (the last check before a bundle is written)."""
        low = text.lower()
        return [w for w in self.known if w.lower() in low]


@dataclass(frozen=True)
class Made:
    path: Path
    bytes: int
    members: list[str]
    scrubbed: int


# ---- what is known to be sensitive
def _walk_secrets(node: Any, out: set[str], key: str = "") -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            _walk_secrets(v, out, str(k))
    elif isinstance(node, list):
        for v in node:
            _walk_secrets(v, out, key)
    elif isinstance(node, str) and node and _SECRET_KEY.search(key):
        out.add(node)


def known_values(cfg: Config, raw: dict[str, Any]) -> set[str]:
    values: set[str] = set()
    _walk_secrets(raw, values)
    secret_dir = cfg.state_dir / "secrets"
    if secret_dir.is_dir():
        for f in secret_dir.iterdir():
            try:
                text = f.read_text().strip()
            except (OSError, UnicodeDecodeError):
                continue
            values.add(text)
            values.update(text.split())  # "admin <password>" files
    for ext in cfg.extensions:
        values.add(ext.name)
        if ext.password:
            values.add(ext.password)
    if cfg.database.is_file():
        from appliance.store.maint import personal_strings

        values.update(personal_strings(cfg.database))
    # Short or purely technical values (an extension number, "agent") would blank the logs.
    return {v for v in values if len(v) >= 4 or not v.isdigit()}


def _scrubbed_config(node: Any, s: Scrubber, key: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _scrubbed_config(v, s, str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_scrubbed_config(v, s, key) for v in node]
    if isinstance(node, str):
        if node and _SECRET_KEY.search(key):
            s.count += 1
            return "<secret removed>"
        return s.scrub(node)
    return node


# ---- pieces
def versions(asterisk: str) -> dict[str, Any]:
    libs: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            libs[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            libs[name] = None
    os_release = ""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_release = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return {
        "callvault": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "os": os_release,
        "asterisk": asterisk,
        "libraries": libs,
    }


def _tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    with path.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - limit))
        return fh.read().decode(errors="replace")


def logs(cfg: Config) -> dict[str, str]:
    out: dict[str, str] = {}
    if shutil.which("journalctl"):
        argv = ["journalctl", "--no-pager", "-o", "short-iso", "--since", "-7d", "-n", "20000"]
        for unit in JOURNAL_UNITS:
            argv += ["-u", unit]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
            out["logs/journal.txt"] = done.stdout[-LOG_TAIL_BYTES:] or done.stderr
        except subprocess.TimeoutExpired:
            out["logs/journal.txt"] = "journalctl did not answer in 60 s"
    else:
        out["logs/journal.txt"] = "no journalctl on this box (a container or the dev sandbox)"
    ast_logs = cfg.asterisk.host_path("/var/log/asterisk")
    if ast_logs.is_dir():
        # Top-level files only: the cdr-* directories are call records, not diagnostics.
        for f in sorted(ast_logs.iterdir()):
            if f.is_file() and not f.name.endswith((".csv", ".db")):
                out[f"logs/asterisk/{f.name}"] = _tail(f)
    return out


# ---- the bundle
def _raw_config(cfg: Config) -> dict[str, Any]:
    if cfg.source is None or not cfg.source.is_file():
        return {}
    return tomllib.loads(cfg.source.read_text())


async def create(cfg: Config, output: Path | None = None) -> Made:
    from appliance.maint import doctor

    raw = await asyncio.to_thread(_raw_config, cfg)
    scrubber = Scrubber(cfg.privacy.default_region, await asyncio.to_thread(known_values, cfg, raw))
    report = await doctor.run(cfg, call=False)
    ast = next((f.detail for f in report.findings if f.check == "version"), "unknown")
    text = io.StringIO()
    doctor.print_report(report, Console(file=text, width=160, color_system=None))
    members: dict[str, str] = {
        "versions.json": json.dumps(versions(ast), indent=2),
        "doctor.json": json.dumps(report.as_dict(), indent=2),
        "doctor.txt": text.getvalue(),
        "config.json": json.dumps(_scrubbed_config(raw, scrubber), indent=2),
    }
    members.update(await asyncio.to_thread(logs, cfg))
    clean = {name: scrubber.scrub(body) for name, body in members.items()}
    for name, body in clean.items():
        left = scrubber.leaks(body)
        if left:
            raise BundleError(f"{name} still holds {len(left)} known value(s) after scrubbing")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    if output is None:
        base = Path.cwd()
        output = base / f"callvault-support-{stamp}.tar.gz"
    await asyncio.to_thread(_write, output, clean)
    return Made(output, output.stat().st_size, sorted(clean), scrubber.count)


def _write(path: Path, members: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh, tarfile.open(fileobj=fh, mode="w:gz") as tar:
        now = time.time()
        for name, body in sorted(members.items()):
            data = body.encode()
            info = tarfile.TarInfo(f"callvault-support/{name}")
            info.size, info.mode, info.mtime = len(data), 0o600, int(now)
            tar.addfile(info, io.BytesIO(data))
