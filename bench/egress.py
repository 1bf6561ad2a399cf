"""`egress_packets` (issue 7): a full AI call through an appliance whose only way out is a
capturing "internet", and the count of packets the appliance sent there (must be 0).

Three network namespaces joined by two veth pairs; nothing else is connected:

    cvx-trunk                      cvx-box (the appliance)                   cvx-inet
    box0 198.51.100.20 ──── trunk0 198.51.100.10      wan0 203.0.113.10 ──── box0 203.0.113.1
    a pjsua2 caller            Asterisk sandbox,       2001:db8:e::10         2001:db8:e::1
    (the SIP trunk)            `callvault serve`       default routes ───►    192.0.2.53 (DNS)
                               (SIP agent + voice)                           192.0.2.123 (NTP)
                                                                             tcpdump -w inet.pcap

The box's default routes (IPv4 and IPv6) and its resolver (`/etc/netns/cvx-box/resolv.conf`,
and the Asterisk rootfs's) point at cvx-inet, so anything the appliance tried to send off the
box — a DNS lookup, NTP, telemetry, an update check, a packet to any address but the trunk —
would cross wan0 and land in the capture. A capture in the trunk namespace shows what should
flow: SIP and RTP between the box and the trunk only.

What counts as egress: every frame in the internet capture whose source is the box (its wan0
MAC or one of its addresses) after the appliance started, ARP included — the box only asks
for the gateway's MAC when it has a packet to send through it. The kernel's own IPv6
housekeeping is kept out of the count by construction, not by a filter: the box's interfaces
have no SLAAC link-local address, no router solicitations and no DAD (sysctls set in the
namespace before the interfaces exist), and the MLD reports that adding the static address
triggers happen during setup, which ends `SETTLE_S` before the appliance starts (they are
listed separately as `setup` packets).

`run_egress_call` is shared by tests/integration/test_egress.py (which asserts on everything)
and `run()` for `make bench`. It needs root and the Asterisk sandbox to itself: run it under
the sandbox lock, never while a session's Asterisk is up (it stops the sandbox first).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance import config
from appliance.config import Config
from appliance.store import Database
from appliance.telephony import render

REPO = Path(__file__).resolve().parents[1]
SANDBOX = REPO / "asterisk" / "sandbox"
DEV_CONFIG = REPO / "config" / "callvault.dev.toml"

BOX, TRUNK, INET = "cvx-box", "cvx-trunk", "cvx-inet"
BOX_TRUNK_IP, TRUNK_IP = "198.51.100.10", "198.51.100.20"
BOX_WAN_IP, INET_IP = "203.0.113.10", "203.0.113.1"
BOX_WAN_IP6, INET_IP6 = "2001:db8:e::10", "2001:db8:e::1"
DNS_IP, NTP_IP = "192.0.2.53", "192.0.2.123"
BOX_IPS = frozenset({BOX_TRUNK_IP, BOX_WAN_IP, BOX_WAN_IP6})
SIP_PORT = 5060
CALLER_NUMBER = "+46701234567"
LINE = "reception"
SETTLE_S = 3.0
"""Between the last network change and the appliance's start: the kernel's MLD reports for
the box's static IPv6 address (two, about a second apart) fall before the egress window."""

SCRIPT = (
    "Hi, I would like to book an appointment for next Tuesday morning, please.",
    "My name is Anna Svensson, and my number is 070 123 45 67.",
)

WAIT_FOR_POSTCALL = True
"""Wait for the call's post-call job (transcripts of the recorded legs, then the report) to
finish before the capture stops, so transcription and summary run inside the egress window.
`callvault serve` runs that pipeline (appliance.voice.postcall); set False only to measure a
build whose serve lacks it (then the run ends once the CDR and the encrypted recordings are
in)."""
POSTCALL_TIMEOUT_S = 600.0


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=20)


def in_ns(ns: str) -> list[str]:
    return ["ip", "netns", "exec", ns]


# ---- the three namespaces -------------------------------------------------------------------

QUIET_IPV6 = (
    # No SLAAC link-local address (so no DAD, no router solicitation from it), no RAs heeded.
    "net.ipv6.conf.default.addr_gen_mode=1",
    "net.ipv6.conf.default.accept_ra=0",
    "net.ipv6.conf.default.autoconf=0",
    "net.ipv6.conf.default.router_solicitations=0",
    "net.ipv6.conf.default.dad_transmits=0",
)


@dataclass
class Topology:
    """The namespaces and links above; `down()` removes everything `up()` made."""

    resolv_dir: Path = Path("/etc/netns") / BOX

    def up(self) -> None:
        self.down()
        for ns in (BOX, TRUNK, INET):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
            _sysctl(ns, *QUIET_IPV6)
        # The peers first, up and addressed, so their captures can start before the box's
        # side comes up.
        ip("-n", BOX, "link", "add", "trunk0", "type", "veth", "peer", "name", "box0",
           "netns", TRUNK)  # fmt: skip
        ip("-n", BOX, "link", "add", "wan0", "type", "veth", "peer", "name", "box0",
           "netns", INET)  # fmt: skip
        ip("-n", TRUNK, "addr", "add", f"{TRUNK_IP}/24", "dev", "box0")
        ip("-n", TRUNK, "link", "set", "box0", "up")
        ip("-n", INET, "addr", "add", f"{INET_IP}/24", "dev", "box0")
        ip("-n", INET, "addr", "add", f"{INET_IP6}/64", "dev", "box0", "nodad")
        for addr in (DNS_IP, NTP_IP):
            ip("-n", INET, "addr", "add", f"{addr}/32", "dev", "lo")
        ip("-n", INET, "link", "set", "box0", "up")
        # The box resolves through "the internet": a lookup anywhere in it would be captured.
        self.resolv_dir.mkdir(parents=True, exist_ok=True)
        (self.resolv_dir / "resolv.conf").write_text(f"nameserver {DNS_IP}\n")

    def connect_box(self) -> None:
        ip("-n", BOX, "addr", "add", f"{BOX_TRUNK_IP}/24", "dev", "trunk0")
        ip("-n", BOX, "link", "set", "trunk0", "up")
        ip("-n", BOX, "addr", "add", f"{BOX_WAN_IP}/24", "dev", "wan0")
        ip("-n", BOX, "addr", "add", f"{BOX_WAN_IP6}/64", "dev", "wan0", "nodad")
        ip("-n", BOX, "link", "set", "wan0", "up")
        ip("-n", BOX, "route", "add", "default", "via", INET_IP)
        ip("-n", BOX, "-6", "route", "add", "default", "via", INET_IP6)

    def mac(self, ns: str, ifname: str) -> str:
        out = ip("-n", ns, "-j", "link", "show", ifname).stdout
        return str(json.loads(out)[0]["address"]).lower()

    def down(self) -> None:
        for ns in (BOX, TRUNK, INET):
            ip("netns", "del", ns, check=False)
        shutil.rmtree(self.resolv_dir, ignore_errors=True)


def _sysctl(ns: str, *settings: str) -> None:
    subprocess.run(
        [*in_ns(ns), "sysctl", "-q", "-w", *settings], check=True, capture_output=True, timeout=20
    )


# ---- capture ----------------------------------------------------------------------------------


class Capture:
    """tcpdump writing every frame on one interface of a namespace to a pcap file."""

    def __init__(self, ns: str, ifname: str, path: Path) -> None:
        self.ns, self.ifname, self.path = ns, ifname, path
        self.proc: subprocess.Popen[str] | None = None
        self.stderr: list[str] = []
        self._listening = threading.Event()
        self.problem = "never started"
        """Why the pcap may not hold everything ("" when it does)."""
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 15.0) -> None:
        # -Z root: Debian's tcpdump drops to user tcpdump before opening the file otherwise.
        self.proc = subprocess.Popen(
            [*in_ns(self.ns), "tcpdump", "-i", self.ifname, "-n", "-U", "-Z", "root",
             "-s", "0", "-w", str(self.path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        if not self._listening.wait(timeout):
            self.stop()
            raise RuntimeError(f"tcpdump on {self.ns}/{self.ifname} did not start: {self.stderr}")

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line.rstrip())
            if "listening on" in line:
                self._listening.set()

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is not None:
            self.problem = f"tcpdump exited early (rc {proc.returncode}): {self.stderr[-3:]}"
            return
        proc.send_signal(signal.SIGINT)  # tcpdump flushes the file and exits
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
            self.problem = "tcpdump did not stop on SIGINT"
            return
        if self._reader is not None:
            self._reader.join(timeout=5)  # its exit statistics come last on stderr
        dropped = [ln for ln in self.stderr if "dropped by kernel" in ln]
        self.problem = "" if dropped and dropped[-1].startswith("0 ") else f"stats: {dropped}"


# ---- pcap reading -----------------------------------------------------------------------------

ETH_ARP, ETH_IPV4, ETH_IPV6, ETH_VLAN = 0x0806, 0x0800, 0x86DD, 0x8100
_IP_PROTO = {1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 58: "icmpv6"}
_V6_EXT = {0, 43, 60}  # hop-by-hop (MLD), routing, destination options


@dataclass(frozen=True)
class Packet:
    ts: float
    src_mac: str
    dst_mac: str
    proto: str
    """arp, tcp, udp, icmp, icmpv6, igmp, or `ip-<n>` / `eth-<hex>` for anything else."""
    src: str = ""
    dst: str = ""
    sport: int = 0
    dport: int = 0
    icmp_type: int = -1
    payload: bytes = b""
    """The UDP/TCP payload (SIP text, RTP)."""

    def __str__(self) -> str:
        where = (
            f"{self.src}:{self.sport} > {self.dst}:{self.dport}"
            if self.sport
            else (f"{self.src} > {self.dst}")
        )
        what = f" type {self.icmp_type}" if self.icmp_type >= 0 else ""
        return f"{self.ts:.3f} {self.src_mac} {self.proto}{what} {where}"


def _mac(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def read_pcap(path: Path) -> list[Packet]:
    """The frames of a classic pcap file (Ethernet link type; µs or ns timestamps)."""
    data = path.read_bytes()
    if len(data) < 24:
        raise ValueError(f"{path}: not a pcap file ({len(data)} bytes)")
    magic = data[:4]
    formats = {
        b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
        b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9),
    }  # fmt: skip
    if magic not in formats:
        raise ValueError(f"{path}: not a pcap file (magic {magic.hex()})")
    endian, tick = formats[magic]
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != 1:
        raise ValueError(f"{path}: link type {linktype}, expected Ethernet (1)")
    packets = []
    off = 24
    while off + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack(endian + "IIII", data[off : off + 16])
        frame = data[off + 16 : off + 16 + caplen]
        off += 16 + caplen
        packets.append(parse_frame(sec + frac * tick, frame))
    return packets


def parse_frame(ts: float, frame: bytes) -> Packet:
    dst_mac, src_mac = _mac(frame[0:6]), _mac(frame[6:12])
    ethertype, off = struct.unpack(">H", frame[12:14])[0], 14
    while ethertype == ETH_VLAN and len(frame) >= off + 4:
        ethertype, off = struct.unpack(">H", frame[off + 2 : off + 4])[0], off + 4
    body = frame[off:]
    base = (ts, src_mac, dst_mac)
    if ethertype == ETH_ARP and len(body) >= 28:
        return Packet(*base, proto="arp", src=_ip4(body[14:18]), dst=_ip4(body[24:28]))
    if ethertype == ETH_IPV4 and len(body) >= 20:
        ihl = (body[0] & 0x0F) * 4
        return _transport(base, body[9], _ip4(body[12:16]), _ip4(body[16:20]), body[ihl:])
    if ethertype == ETH_IPV6 and len(body) >= 40:
        nxt, rest = body[6], body[40:]
        while nxt in _V6_EXT and len(rest) >= 8:
            nxt, rest = rest[0], rest[(rest[1] + 1) * 8 :]
        return _transport(base, nxt, _ip6(body[8:24]), _ip6(body[24:40]), rest)
    return Packet(*base, proto=f"eth-{ethertype:04x}")


def _transport(base: tuple[float, str, str], proto: int, src: str, dst: str, rest: bytes) -> Packet:
    name = _IP_PROTO.get(proto, f"ip-{proto}")
    if name == "udp" and len(rest) >= 8:
        sport, dport = struct.unpack(">HH", rest[:4])
        return Packet(*base, proto=name, src=src, dst=dst, sport=sport, dport=dport,
                      payload=rest[8:])  # fmt: skip
    if name == "tcp" and len(rest) >= 20:
        sport, dport = struct.unpack(">HH", rest[:4])
        doff = (rest[12] >> 4) * 4
        return Packet(*base, proto=name, src=src, dst=dst, sport=sport, dport=dport,
                      payload=rest[doff:])  # fmt: skip
    if name in ("icmp", "icmpv6") and rest:
        return Packet(*base, proto=name, src=src, dst=dst, icmp_type=rest[0])
    return Packet(*base, proto=name, src=src, dst=dst)


def _ip4(b: bytes) -> str:
    return ".".join(str(x) for x in b)


def _ip6(b: bytes) -> str:
    return str(ipaddress.IPv6Address(b))


def from_box(packets: list[Packet], box_macs: set[str], box_ips: frozenset[str]) -> list[Packet]:
    """Frames the box sent: its MAC as the source, or one of its addresses (ARP included)."""
    return [p for p in packets if p.src_mac in box_macs or p.src in box_ips]


# ---- what the trunk saw -------------------------------------------------------------------------


@dataclass
class TrunkTraffic:
    sip_from_trunk: list[str] = field(default_factory=list)
    """First lines of the SIP messages the trunk sent to the box (requests and responses)."""
    sip_from_box: list[str] = field(default_factory=list)
    rtp_to_box: int = 0
    rtp_from_box: int = 0
    other: list[Packet] = field(default_factory=list)
    """Anything else: ARP between the two, or traffic that should not be there."""

    def summary(self) -> str:
        return (
            f"SIP trunk→box {self.sip_from_trunk}, box→trunk {self.sip_from_box}; "
            f"RTP trunk→box {self.rtp_to_box} packets, box→trunk {self.rtp_from_box}; "
            f"other {[str(p) for p in self.other][:10]}"
        )


def is_rtp(p: Packet) -> bool:
    return (
        p.proto == "udp"
        and SIP_PORT not in (p.sport, p.dport)
        and len(p.payload) >= 12
        and p.payload[0] >> 6 == 2
    )


def trunk_traffic(packets: list[Packet]) -> TrunkTraffic:
    t = TrunkTraffic()
    for p in packets:
        pair = (p.src, p.dst)
        if p.proto == "udp" and SIP_PORT in (p.sport, p.dport) and p.payload:
            first = p.payload.split(b"\r\n", 1)[0].decode("utf-8", "replace")
            if pair == (TRUNK_IP, BOX_TRUNK_IP):
                t.sip_from_trunk.append(first)
                continue
            if pair == (BOX_TRUNK_IP, TRUNK_IP):
                t.sip_from_box.append(first)
                continue
        if is_rtp(p) and pair == (TRUNK_IP, BOX_TRUNK_IP):
            t.rtp_to_box += 1
        elif is_rtp(p) and pair == (BOX_TRUNK_IP, TRUNK_IP):
            t.rtp_from_box += 1
        else:
            t.other.append(p)
    return t


# ---- the appliance's config ---------------------------------------------------------------------


def box_config_text(work: Path) -> str:
    """The dev config as the box runs it: SIP on the box's trunk-side address, the trunk as
    an IP peer (instead of the loopback load generator), state and database in `work`."""
    text = DEV_CONFIG.read_text()
    swaps = {
        'state_dir = "../var"\n': (
            f'state_dir = "{work / "state"}"\ndatabase = "{work / "callvault.db"}"\n'
        ),
        "sandbox = true\n": f'sandbox = true\nsip_bind = "{BOX_TRUNK_IP}"\n',
        'name = "loadgen"\nmatch = "127.0.0.2"\n': f'name = "trunk"\nmatch = "{TRUNK_IP}"\n',
    }
    for old, new in swaps.items():
        if text.count(old) != 1:
            raise RuntimeError(f"{DEV_CONFIG} changed: cannot find {old.strip()!r} to replace")
        text = text.replace(old, new)
    raw = tomllib.loads(text)
    assert raw["asterisk"]["sip_bind"] == BOX_TRUNK_IP
    assert [p["match"] for p in raw["ip_peers"]] == [TRUNK_IP]
    return text


def synthesise(cfg: Config, texts: tuple[str, ...], work: Path) -> list[Path]:
    """The caller's utterances as 8 kHz PCM files, spoken by the line's Piper voice."""
    from appliance.models.commands import active_profile
    from appliance.models.manifest import load_manifest
    from appliance.models.store import ModelStore
    from appliance.voice.tts import Tts

    manifest = load_manifest()
    entry = manifest.profile(active_profile(cfg, manifest))["tts"]
    onnx = next(f.name for f in entry.files if f.name.endswith(".onnx"))
    tts = Tts(ModelStore(cfg.models.dir, manifest).file(entry.name, onnx))
    paths = []
    for i, text in enumerate(texts):
        path = work / f"say-{i + 1}.pcm"
        path.write_bytes(b"".join(tts.speak(text)))
        paths.append(path)
    return paths


# ---- the run ------------------------------------------------------------------------------------


@dataclass
class EgressRun:
    egress: list[Packet]
    """Frames from the box in the internet capture after the appliance started (must be [])."""
    setup: list[Packet]
    """Frames from the box before that: the kernel configuring the interfaces."""
    inet_frames: int
    capture_problems: list[str]
    """Reasons a capture may have missed frames (must be [])."""
    trunk: TrunkTraffic
    caller: dict[str, Any]
    cdrs: list[dict[str, Any]] = field(default_factory=list)
    recordings: list[dict[str, Any]] = field(default_factory=list)
    postcall: dict[str, Any] | None = None
    transcripts: list[dict[str, Any]] = field(default_factory=list)
    report: dict[str, Any] | None = None
    serve_rc: int | None = None
    serve_stderr: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    pcaps: dict[str, Path] = field(default_factory=dict)

    @property
    def call_id(self) -> str:
        return str(self.cdrs[0]["call_id"]) if self.cdrs else ""

    def summary(self) -> str:
        lines = [
            f"internet capture: {self.inet_frames} frames, {len(self.egress)} from the box "
            f"after the appliance started, {len(self.setup)} during interface setup; "
            f"capture problems {self.capture_problems}",
            *(f"  egress: {p}" for p in self.egress[:20]),
            *(f"  setup:  {p}" for p in self.setup[:10]),
            f"trunk capture: {self.trunk.summary()}",
            f"caller: {self.caller}",
            f"post-call job: {self.postcall}; transcripts {len(self.transcripts)}; "
            f"report {'yes' if self.report else 'no'}",
            f"timings: {self.seconds}",
        ]
        return "\n".join(lines)


class _Serve:
    """`callvault serve` in the box namespace; ready when it prints `callvault: ready`."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            [*in_ns(BOX), sys.executable, "-m", "appliance.cli", "--config", str(config_path),
             "serve"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=self._log, text=True,
        )  # fmt: skip
        self.stdout: list[str] = []
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line.rstrip())
            if line.strip() == "callvault: ready":
                self._ready.set()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"callvault serve not ready (rc {self.proc.poll()}):\n{self.stderr()[-3000:]}"
                )

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode

    def stderr(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")


def sandbox(action: str, cfg: Config, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        "CALLVAULT_ROOTFS": str(cfg.asterisk.root),
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        **env,
    }
    return subprocess.run(
        [str(SANDBOX), action], env=full, capture_output=True, text=True, timeout=120,
        check=False, cwd=REPO,
    )  # fmt: skip


def _require_root_tools(cfg: Config) -> None:
    if os.geteuid() != 0:
        raise RuntimeError("the egress run needs root (network namespaces, the sandbox)")
    for tool in ("ip", "tcpdump"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is missing: apt-get install iproute2 tcpdump")
    if not (cfg.asterisk.root / ".callvault-ready").exists():
        raise RuntimeError(f"no Asterisk rootfs at {cfg.asterisk.root}: run `make install`")


async def _wait_rows(
    db_path: Path, *, postcall: bool, log: Callable[[str], None], timeout: float
) -> dict[str, Any]:
    """CDRs and encrypted recordings of the trunk's call; then (with `postcall`) its
    post-call job done, transcripts and report stored."""
    out: dict[str, Any] = {"cdrs": [], "recordings": []}
    deadline = time.monotonic() + timeout
    async with Database(db_path) as db:
        while time.monotonic() < deadline:
            cdrs = [r for r in await db.cdrs(limit=50) if r["calling_number"] == CALLER_NUMBER]
            if cdrs:
                out["cdrs"] = cdrs
                out["recordings"] = await db.recordings(str(cdrs[0]["call_id"]))
                if len(out["recordings"]) >= 3:
                    break
            await asyncio.sleep(0.5)
        if not out["recordings"] or not postcall:
            return out
        call_id = str(out["cdrs"][0]["call_id"])
        log(f"call {call_id}: CDR and recordings in; waiting for its transcripts and report")
        pdeadline = time.monotonic() + POSTCALL_TIMEOUT_S
        while time.monotonic() < pdeadline:
            out["postcall"] = await db.post_call_job(call_id)
            if out["postcall"] is not None and out["postcall"]["stage"] == "done":
                break
            await asyncio.sleep(1.0)
        out["transcripts"] = await db.transcripts(call_id)
        out["report"] = await db.report_for_call(call_id)
    return out


def run_egress_call(
    work: Path, *, wait_postcall: bool = WAIT_FOR_POSTCALL, log: Callable[[str], None] = print
) -> EgressRun:
    """One call from the trunk into the AI line with the appliance in its namespace; every
    process and namespace it made is gone when it returns or raises."""
    config_path = work / "callvault.toml"
    config_path.write_text(box_config_text(work))
    cfg = config.load(config_path)
    _require_root_tools(cfg)
    t = {"start": time.monotonic()}
    speech = synthesise(cfg, SCRIPT, work)
    pcaps = {"inet": work / "inet.pcap", "trunk": work / "trunk.pcap"}
    topo = Topology()
    inet_cap = Capture(INET, "box0", pcaps["inet"])
    trunk_cap = Capture(TRUNK, "box0", pcaps["trunk"])
    serve: _Serve | None = None
    rows: dict[str, Any] = {}
    caller: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        # Finalizers run in reverse: serve, Asterisk, captures, namespaces — even on failure.
        stack.callback(topo.down)
        # The session's own Asterisk (root namespace) must not be running: one rootfs, one
        # Asterisk (pid file, control socket, astdb and spool are shared).
        sandbox("down", cfg)
        render.write(cfg, render.render(cfg))
        topo.up()
        stack.callback(trunk_cap.stop)
        stack.callback(inet_cap.stop)
        inet_cap.start()
        trunk_cap.start()
        topo.connect_box()
        box_macs = {topo.mac(BOX, "wan0"), topo.mac(BOX, "trunk0")}
        time.sleep(SETTLE_S)
        mark = time.time()
        stack.callback(lambda: sandbox("down", cfg))
        up = sandbox("up", cfg, CALLVAULT_NETNS=BOX, CALLVAULT_RESOLVER=DNS_IP)
        if up.returncode != 0:
            raise RuntimeError(f"Asterisk sandbox did not start in {BOX}:\n{up.stderr}")
        t["asterisk_up"] = time.monotonic()
        serve = _Serve(config_path, work / "serve.log")
        stack.callback(serve.stop)
        serve.wait_ready(timeout=300)
        t["serve_ready"] = time.monotonic()
        log(f"appliance serving in {BOX}; the trunk calls line {LINE}")
        placed = subprocess.run(
            [*in_ns(TRUNK), sys.executable, "-m", "bench.egress_caller",
             "--target", f"sip:100@{BOX_TRUNK_IP}:{SIP_PORT}", "--bind", TRUNK_IP,
             "--number", CALLER_NUMBER, "--rx", str(work / "caller-heard.pcm"),
             *map(str, speech)],
            cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        t["call_done"] = time.monotonic()
        if placed.returncode != 0 or not placed.stdout.strip():
            raise RuntimeError(f"the trunk's call failed (rc {placed.returncode}):\n"
                               f"{placed.stderr[-3000:]}")  # fmt: skip
        caller = json.loads(placed.stdout.strip().splitlines()[-1])
        log(f"call done: {caller}")
        rows = asyncio.run(_wait_rows(cfg.database, postcall=wait_postcall, log=log, timeout=60))
        t["postcall_done"] = time.monotonic()
        # Stop everything (the finalizers above, in order) before reading the captures, so
        # the window covers the appliance's shutdown too.
        stack.close()
    serve_rc = serve.proc.returncode if serve is not None else None
    serve_stderr = serve.stderr() if serve is not None else ""
    inet = read_pcap(pcaps["inet"])
    boxed = from_box(inet, box_macs, BOX_IPS)
    seconds = {k: round(v - t["start"], 1) for k, v in t.items() if k != "start"}
    return EgressRun(
        egress=[p for p in boxed if p.ts >= mark],
        setup=[p for p in boxed if p.ts < mark],
        inet_frames=len(inet),
        capture_problems=[
            f"{c.ns}/{c.ifname}: {c.problem}" for c in (inet_cap, trunk_cap) if c.problem
        ],
        trunk=trunk_traffic(read_pcap(pcaps["trunk"])),
        caller=caller,
        cdrs=rows.get("cdrs", []),
        recordings=rows.get("recordings", []),
        postcall=rows.get("postcall"),
        transcripts=rows.get("transcripts", []),
        report=rows.get("report"),
        serve_rc=serve_rc,
        serve_stderr=serve_stderr,
        seconds=seconds,
        pcaps=pcaps,
    )


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="callvault-egress-") as td:
        yield Path(td)


def run(log: Callable[[str], None] = print) -> dict[str, float]:
    """`egress_packets` for `make bench`; raises when the call itself did not happen (a 0
    from a call that never ran would be a lie)."""
    with _workdir() as work:
        result = run_egress_call(work, log=log)
        log(result.summary())
        problems = check_call(result)
        if problems:
            raise RuntimeError("egress run: the call did not complete: " + "; ".join(problems))
        return {"egress_packets": float(len(result.egress))}


def check_call(r: EgressRun, *, postcall: bool = WAIT_FOR_POSTCALL) -> list[str]:
    """What is missing for the run to count as a full call (empty: it was one)."""
    problems = []
    tr = r.trunk
    if not any(x.startswith("INVITE sip:100@") for x in tr.sip_from_trunk):
        problems.append("no INVITE from the trunk")
    if "SIP/2.0 200 OK" not in tr.sip_from_box:
        problems.append("the box never answered 200 OK")
    if not any(x.startswith("BYE ") for x in tr.sip_from_trunk + tr.sip_from_box):
        problems.append("no BYE")
    if tr.rtp_to_box < 500 or tr.rtp_from_box < 500:
        problems.append(f"too little RTP ({tr.rtp_to_box} to the box, {tr.rtp_from_box} back)")
    if r.caller.get("greeting_after_s") is None:
        problems.append("the caller never heard the greeting")
    if not any(a is not None for a in r.caller.get("answers_after_s", [])):
        problems.append("the agent never answered the caller")
    if not r.cdrs or r.cdrs[0]["disposition"] != "ANSWERED" or r.cdrs[0]["line"] != LINE:
        problems.append(f"no answered CDR on {LINE}: {r.cdrs}")
    if len(r.recordings) < 3:
        problems.append(f"{len(r.recordings)} recordings stored, expected 3 legs")
    if postcall:
        if r.postcall is None or r.postcall["stage"] != "done":
            problems.append(f"post-call job not done: {r.postcall}")
        if not r.transcripts:
            problems.append("no transcript stored")
        if r.report is None:
            problems.append("no report stored")
    if r.capture_problems:
        problems.append(f"captures incomplete: {r.capture_problems}")
    if r.serve_rc != 0:
        problems.append(f"callvault serve exited {r.serve_rc}")
    return problems


if __name__ == "__main__":
    print(run())
