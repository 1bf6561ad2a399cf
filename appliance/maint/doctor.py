"""`callvault doctor`: check the box and explain what is wrong, and what to do about it.

Each check gives pass, warn or fail with a detail and, when not passing, a hint. The exit code
is 1 when anything failed, 3 when something only warns, 0 when all passed: a script (or the
support desk reading a bundle) tells the difference.

Checks: the database schema against this release, Asterisk (AMI login, version, every module
the rendered modules.conf loads), trunk reachability (a SIP OPTIONS to each IP peer, and the
state of outbound registrations), NTP sync (timedatectl or chronyc), disk, GPU and driver and
the device each model runs on, model files (sha256 of every file; `--quick`: sizes), the admin
certificate, the firewall ruleset (nft) and the time Asterisk takes to answer a test call to
the echo line. Nothing here writes except the test call's CDR.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

from appliance.config import Config
from appliance.errors import CallvaultError
from appliance.telephony.ami import AmiClient, AmiError

Status = Literal["pass", "warn", "fail"]
AMI_TIMEOUT_S = 3.0
OPTIONS_TIMEOUT_S = 2.0
CALL_TIMEOUT_S = 10.0
CERT_WARN_DAYS = 30
DISK_FAIL_BYTES = 1 << 30
DISK_WARN_PCT = 85.0
ASTERISK_TESTED = (20, 21, 22)


@dataclass(frozen=True)
class Finding:
    area: str
    check: str
    status: Status
    detail: str
    hint: str = ""


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, area: str, check: str, status: Status, detail: str, hint: str = "") -> None:
        self.findings.append(Finding(area, check, status, detail, hint))

    @property
    def exit_code(self) -> int:
        states = {f.status for f in self.findings}
        return 1 if "fail" in states else 3 if "warn" in states else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 2),
            "findings": [asdict(f) for f in self.findings],
        }


def _run(argv: list[str], timeout: float = 5.0) -> tuple[int, str]:
    """(exit status, stdout+stderr) of a local tool; 127 when it is not installed."""
    if shutil.which(argv[0]) is None:
        return 127, f"{argv[0]} not installed"
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return 124, f"{argv[0]} did not answer in {timeout:.0f} s"
    return done.returncode, (done.stdout + done.stderr).strip()


# ---- database
def check_database(cfg: Config, r: Report) -> None:
    from appliance.maint.upgrade import UpgradeError, plan
    from appliance.store import maint as store_maint

    if not cfg.database.is_file():
        r.add(
            "database",
            "schema",
            "warn",
            f"no database at {cfg.database}",
            "it is created when the appliance first starts (`callvault serve`)",
        )
        return
    try:
        p = plan(cfg)
    except UpgradeError as exc:
        r.add("database", "schema", "fail", str(exc))
        return
    if p.pending:
        r.add(
            "database",
            "schema",
            "warn",
            f"schema {p.current}, this release {p.newest}",
            "run `callvault upgrade` (backs up first)",
        )
    else:
        r.add("database", "schema", "pass", f"schema {p.current} (this release's)")
    lines = store_maint.quick_check(cfg.database)
    ok = lines == ["ok"]
    r.add(
        "database",
        "integrity",
        "pass" if ok else "fail",
        "; ".join(lines[:3]),
        "" if ok else "restore the newest verified backup (`callvault backup list`)",
    )


# ---- Asterisk over AMI
async def _ami(cfg: Config) -> AmiClient:
    client = AmiClient.for_config(cfg, connect_timeout_s=AMI_TIMEOUT_S, ping_s=60)
    await client.connect()
    return client


def _version_ok(version: str) -> bool:
    head = version.split(".", 1)[0]
    return head.isdigit() and int(head) in ASTERISK_TESTED


async def check_asterisk(cfg: Config, r: Report, *, call: bool) -> None:
    from appliance.telephony.render import MODULES

    try:
        client = await _ami(cfg)
    except (AmiError, OSError, CallvaultError) as exc:
        r.add(
            "asterisk",
            "AMI login",
            "fail",
            str(exc),
            "start Asterisk (`systemctl start asterisk`); check asterisk.ami_* and manager.conf",
        )
        r.add("asterisk", "version and modules", "warn", "not checked: no AMI session")
        return
    try:
        a = cfg.asterisk
        r.add("asterisk", "AMI login", "pass", f"{a.ami_username}@{a.ami_host}:{a.ami_port}")
        settings = await asyncio.wait_for(client.action("CoreSettings"), AMI_TIMEOUT_S)
        version = settings.get("AsteriskVersion", "")
        r.add(
            "asterisk",
            "version",
            "pass" if _version_ok(version) else "warn",
            version or "?",
            ""
            if _version_ok(version)
            else f"tested with Asterisk {'/'.join(map(str, ASTERISK_TESTED))}",
        )
        missing = []
        for module in MODULES:
            try:
                await asyncio.wait_for(client.action("ModuleCheck", Module=module), AMI_TIMEOUT_S)
            except AmiError:
                missing.append(module)
        if missing:
            r.add(
                "asterisk",
                "modules",
                "fail",
                f"not loaded: {', '.join(missing)}",
                "`callvault asterisk render`, then restart Asterisk; install the missing "
                "modules' package",
            )
        else:
            r.add("asterisk", "modules", "pass", f"all {len(MODULES)} needed modules loaded")
        await _registrations(client, r)
        if call:
            await check_echo_call(cfg, client, r)
    finally:
        await client.close()


async def _registrations(client: AmiClient, r: Report) -> None:
    try:
        events = await asyncio.wait_for(
            client.action_list("PJSIPShowRegistrationsOutbound"), AMI_TIMEOUT_S
        )
    except (AmiError, TimeoutError):
        return  # none configured: Asterisk answers an empty list with an error
    for ev in events:
        if ev.get("Event") != "OutboundRegistrationDetail":
            continue
        name, status = ev.get("ObjectName", "?"), ev.get("Status", "?")
        good = status == "Registered"
        r.add(
            "trunks",
            f"registration {name}",
            "pass" if good else "fail",
            f"{status} at {ev.get('ServerUri', '?')}",
            ""
            if good
            else "check the trunk's credentials and that the provider is reachable (firewall, DNS)",
        )


async def check_echo_call(cfg: Config, client: AmiClient, r: Report) -> None:
    echo = next((line for line in cfg.lines if line.kind == "echo"), None)
    if echo is None:
        r.add(
            "calls",
            "test call",
            "warn",
            "no echo line configured",
            'add a line with kind = "echo" to measure call answer time',
        )
        return
    t0 = time.monotonic()
    try:
        # Synchronous originate: Asterisk answers once the echo line has answered the call.
        await asyncio.wait_for(
            client.action(
                "Originate",
                Channel=f"Local/{echo.extension}@callvault-internal",
                Async="false",
                Application="Wait",
                Data="1",
                CallerID='"callvault doctor" <0>',
                Timeout=str(int(CALL_TIMEOUT_S * 1000)),
                ActionID=f"doctor-{secrets.token_hex(4)}",
            ),
            CALL_TIMEOUT_S + 2,
        )
    except (AmiError, TimeoutError) as exc:
        r.add(
            "calls",
            f"test call to {echo.extension}",
            "fail",
            str(exc) or "no answer",
            "`callvault asterisk render` and check the dialplan (extensions.conf)",
        )
        return
    ms = (time.monotonic() - t0) * 1000
    r.add(
        "calls",
        f"test call to {echo.extension} ({echo.name})",
        "pass" if ms < 2000 else "warn",
        f"answered in {ms:.0f} ms",
        "" if ms < 2000 else "Asterisk is slow to answer: CPU load?",
    )


# ---- trunks: SIP OPTIONS
def _options(branch: str, target: str, port: int, local: tuple[str, int]) -> bytes:
    call_id = secrets.token_hex(8)
    return (
        f"OPTIONS sip:{target}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {local[0]}:{local[1]};branch=z9hG4bK{branch};rport\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:doctor@{local[0]}>;tag={secrets.token_hex(4)}\r\n"
        f"To: <sip:{target}:{port}>\r\n"
        f"Call-ID: {call_id}@callvault-doctor\r\n"
        f"CSeq: 1 OPTIONS\r\n"
        f"User-Agent: callvault-doctor\r\n"
        f"Accept: application/sdp\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def sip_options(host: str, port: int = 5060, timeout: float = OPTIONS_TIMEOUT_S) -> str:
    """The status line a SIP peer answers an OPTIONS with; raises OSError/TimeoutError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        local = sock.getsockname()[:2]
        branch = secrets.token_hex(6)
        sock.send(_options(branch, host, port, local))
        deadline = time.monotonic() + timeout
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            data = sock.recv(65535)
            text = data.decode(errors="replace")
            if text.startswith("SIP/2.0") and branch in text:
                return text.split("\r\n", 1)[0]


async def check_trunks(cfg: Config, r: Report) -> None:
    if not cfg.ip_peers:
        r.add("trunks", "SIP OPTIONS", "pass", "no IP peers configured")
        return
    for peer in cfg.ip_peers:
        try:
            net = ipaddress.ip_network(peer.match, strict=False)
        except ValueError:
            host = peer.match  # a host name
        else:
            if net.num_addresses > 1:
                r.add(
                    "trunks",
                    f"{peer.name} OPTIONS",
                    "pass",
                    f"{peer.match} is a network: nothing single to ask",
                )
                continue
            host = str(net.network_address)
        t0 = time.monotonic()
        try:
            line = await asyncio.to_thread(sip_options, host)
        except (OSError, TimeoutError) as exc:
            why = "no answer" if isinstance(exc, TimeoutError) else str(exc)
            r.add(
                "trunks",
                f"{peer.name} OPTIONS",
                "fail",
                f"{host}:5060: {why}",
                "is the peer up, and does the firewall let SIP through both ways?",
            )
            continue
        ms = (time.monotonic() - t0) * 1000
        r.add("trunks", f"{peer.name} OPTIONS", "pass", f"{host}: {line} in {ms:.0f} ms")


# ---- the host
def check_ntp(r: Report) -> None:
    rc, out = _run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
    if rc == 0 and out in {"yes", "no"}:
        good = out == "yes"
        r.add(
            "host",
            "NTP sync",
            "pass" if good else "fail",
            f"timedatectl: NTPSynchronized={out}",
            ""
            if good
            else "the clock is not synchronised: call times, certificates and "
            "rights-request deadlines depend on it; check the NTP servers and firewall",
        )
        return
    rc, out = _run(["chronyc", "-n", "tracking"])
    if rc == 0:
        leap = next((x for x in out.splitlines() if x.startswith("Leap status")), "")
        good = leap.endswith("Normal")
        r.add(
            "host",
            "NTP sync",
            "pass" if good else "fail",
            f"chronyc: {leap or out[:80]}",
            "" if good else "chrony is not synchronised: check its sources",
        )
        return
    r.add(
        "host",
        "NTP sync",
        "warn",
        "cannot tell: neither timedatectl (systemd) nor chronyc answered here",
        "on the appliance, install chrony or enable systemd-timesyncd; a container shares "
        "its host's clock, check the host",
    )


def check_disks(cfg: Config, r: Report) -> None:
    from appliance.admin.status import disks

    for d in disks(cfg):
        status: Status = "pass"
        if d.free_gb * 1e9 < DISK_FAIL_BYTES:
            status = "fail"
        elif d.used_pct > DISK_WARN_PCT:
            status = "warn"
        r.add(
            "host",
            f"disk: {d.what}",
            status,
            f"{d.path}: {d.free_gb:.1f} GB free of {d.total_gb:.1f} ({d.used_pct:.0f} % used)",
            ""
            if status == "pass"
            else "free space: retention purge, fewer backups (backup.keep), or larger disks",
        )


def check_gpu(r: Report) -> None:
    rc, out = _run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"])
    if rc == 127:
        r.add("models", "GPU driver", "pass", "no NVIDIA driver (nvidia-smi absent): CPU profile")
    elif rc != 0:
        r.add(
            "models",
            "GPU driver",
            "fail",
            out.splitlines()[-1] if out else f"exit {rc}",
            "the NVIDIA driver does not talk to the GPU: reinstall it, reboot",
        )
    else:
        r.add("models", "GPU driver", "pass", "; ".join(out.splitlines()))


async def check_models(cfg: Config, r: Report, *, deep: bool) -> None:
    from appliance.admin.status import models_status

    st = await models_status(cfg)
    if st.error:
        r.add("models", "manifest", "fail", st.error)
        return
    g = st.gpu
    r.add(
        "models",
        "devices",
        "pass",
        f"profile {st.profile}; CUDA devices for whisper {g.cuda_devices}, llama.cpp GPU "
        f"offload {'yes' if g.llama_offload else 'no'}, onnxruntime CUDA "
        f"{'yes' if g.onnx_cuda else 'no'}",
    )
    for m in st.used:
        detail = f"{m.slot} on {m.device}" + ("" if m.installed else f": {m.problem}")
        r.add(
            "models",
            m.name,
            "pass" if m.installed else "fail",
            detail,
            "" if m.installed else "`callvault models install`",
        )
    if deep:
        from appliance.models.manifest import load_manifest
        from appliance.models.store import ModelStore

        manifest = load_manifest()
        store = ModelStore(cfg.models.dir, manifest)
        for m in st.used:
            v = await asyncio.to_thread(store.verify, manifest.model(m.name))
            r.add(
                "models",
                f"{m.name} sha256",
                "pass" if v.installed else "fail",
                "every file matches the manifest" if v.installed else v.problem,
                "" if v.installed else "`callvault models install` re-assembles it",
            )


def check_certificate(cfg: Config, r: Report, now: dt.datetime | None = None) -> None:
    from cryptography import x509

    cert_path, key_path = cfg.admin.cert_paths(cfg.state_dir)
    if not cert_path.is_file():
        generated = cfg.admin.tls_cert is None
        r.add(
            "admin",
            "certificate",
            "warn" if generated else "fail",
            f"no file {cert_path}",
            "generated at the admin UI's first start"
            if generated
            else "admin.tls_cert names a file that does not exist",
        )
        return
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as exc:
        r.add("admin", "certificate", "fail", f"{cert_path}: {exc}", "replace the certificate")
        return
    now = now or dt.datetime.now(dt.UTC)
    left = (cert.not_valid_after_utc - now).days
    until = cert.not_valid_after_utc.date().isoformat()
    if cert.not_valid_before_utc > now or left < 0:
        r.add(
            "admin",
            "certificate",
            "fail",
            f"not valid now (valid until {until})",
            "renew it: delete the generated pair to have a new one made, or install yours",
        )
    elif left < CERT_WARN_DAYS:
        r.add(
            "admin",
            "certificate",
            "warn",
            f"expires in {left} days ({until})",
            "renew it before it expires",
        )
    else:
        r.add("admin", "certificate", "pass", f"valid until {until} ({left} days)")
    if not key_path.is_file():
        r.add("admin", "certificate key", "fail", f"no file {key_path}")


def check_firewall(cfg: Config, r: Report) -> None:
    rc, out = _run(["nft", "list", "ruleset"])
    # A development sandbox has no firewall of its own: not applying it is no failure there.
    missing: Status = "warn" if cfg.asterisk.sandbox else "fail"
    if rc == 127:
        r.add(
            "host",
            "firewall",
            missing,
            "nft is not installed: no rules to check",
            "the Ansible firewall role installs nftables and the appliance's ruleset",
        )
        return
    if rc != 0:
        r.add(
            "host",
            "firewall",
            "warn",
            f"nft list ruleset: {out[:120]}",
            "run doctor as root to read the ruleset",
        )
        return
    if "table inet callvault" not in out:
        r.add(
            "host",
            "firewall",
            missing,
            "no `table inet callvault` in the ruleset",
            "apply the Ansible firewall role (systemctl restart nftables)",
        )
        return
    policy = "policy drop" in out
    r.add(
        "host",
        "firewall",
        "pass" if policy else "fail",
        "table inet callvault loaded" + (", default drop" if policy else ", no drop policy"),
        "" if policy else "the ruleset was changed by hand: reapply the firewall role",
    )


# ---- all of it
async def run(cfg: Config, *, deep: bool = False, call: bool = True) -> Report:
    r = Report()
    t0 = time.monotonic()
    steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("database", lambda: asyncio.to_thread(check_database, cfg, r)),
        ("asterisk", lambda: check_asterisk(cfg, r, call=call)),
        ("trunks", lambda: check_trunks(cfg, r)),
        ("ntp", lambda: asyncio.to_thread(check_ntp, r)),
        ("disks", lambda: asyncio.to_thread(check_disks, cfg, r)),
        ("gpu", lambda: asyncio.to_thread(check_gpu, r)),
        ("models", lambda: check_models(cfg, r, deep=deep)),
        ("certificate", lambda: asyncio.to_thread(check_certificate, cfg, r)),
        ("firewall", lambda: asyncio.to_thread(check_firewall, cfg, r)),
    ]
    for name, step in steps:
        try:
            await step()
        except (CallvaultError, OSError, ValueError) as exc:  # one broken check hides no other
            r.add(name, "check", "fail", f"{type(exc).__name__}: {exc}")
    r.seconds = time.monotonic() - t0
    return r


_STYLE = {"pass": "[green]pass[/]", "warn": "[bold yellow]WARN[/]", "fail": "[bold red]FAIL[/]"}


def print_report(report: Report, console: Console) -> None:
    table = Table(title="callvault doctor")
    for col in ("area", "check", "result", "detail", "what to do"):
        table.add_column(col, overflow="fold")
    for f in report.findings:
        table.add_row(f.area, f.check, _STYLE[f.status], f.detail, f.hint)
    console.print(table)
    counts = {s: sum(f.status == s for f in report.findings) for s in ("pass", "warn", "fail")}
    console.print(
        f"{counts['pass']} passed, {counts['warn']} warnings, {counts['fail']} failed "
        f"in {report.seconds:.1f} s (exit {report.exit_code})"
    )
