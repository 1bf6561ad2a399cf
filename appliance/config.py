"""The appliance's one typed configuration file (TOML).

Every key has a documented default here; `config/callvault.dev.toml` is the development default
and `/etc/callvault/callvault.toml` the appliance's. Relative paths are resolved against the
directory of the config file. Loading validates everything and names the offending field, so a
bad file is rejected before anything is rendered or written.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast, get_args

from appliance.errors import ConfigError
from appliance.secrets import SecretStore
from appliance.voice.dialogue.playbook import PlaybookConfig, parse_playbook

DEFAULT_PATH = Path("/etc/callvault/callvault.toml")

Leg = Literal["caller", "callee", "mixed"]
LineKind = Literal["agent", "echo", "announcement"]
RecordingPolicy = Literal["always", "after-consent", "on-demand", "off"]
LEGS: tuple[str, ...] = get_args(Leg)
RECORDING_POLICIES: tuple[str, ...] = get_args(RecordingPolicy)
LINE_KINDS: tuple[str, ...] = get_args(LineKind)
LawfulBasis = Literal[
    "consent",
    "contract",
    "legal-obligation",
    "vital-interests",
    "public-task",
    "legitimate-interest",
]
LAWFUL_BASES: tuple[str, ...] = get_args(LawfulBasis)

# Compiled into the pjsua2-python 2.15.1.post1 wheel; pjsua silently caps higher values.
PJSUA_MAX_CALLS = 4

_EXTENSION = re.compile(r"^[0-9]{2,8}$")
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_LANGUAGE = re.compile(r"^([a-z]{2}|auto)$")
_SIP_USER = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


@dataclass(frozen=True)
class AsteriskConfig:
    """How the appliance reaches and renders Asterisk."""

    root: Path = Path("/")
    """Filesystem root Asterisk runs in: `/` on an appliance, the sid rootfs in the sandbox."""
    sandbox: bool = False
    """True when Asterisk runs in the `asterisk/sandbox` chroot (dev and CI)."""
    config_dir: str = "/etc/asterisk"
    """Where Asterisk reads its configs, as Asterisk sees it."""
    ami_host: str = "127.0.0.1"
    ami_port: int = 5038
    ami_username: str = "callvault"
    ami_secret: str = ""
    """Empty: generated on the box and kept in `<state_dir>/secrets/ami_secret`."""
    ami_connect_timeout_s: float = 5.0
    ami_reconnect_s: float = 1.0
    sip_bind: str = "127.0.0.1"
    sip_port: int = 5060
    rtp_start: int = 10000
    rtp_end: int = 10999
    spool_dir: str = "/var/spool/asterisk/monitor"
    """Where MixMonitor writes, as Asterisk sees it (a tmpfs on the appliance)."""
    cdr_log: str = "/var/log/asterisk/cdr-custom/callvault.csv"
    """Asterisk's own CDR file, read to reconcile CDRs missed while AMI was down."""

    def host_path(self, inside: str) -> Path:
        """A path as Asterisk sees it, translated to the host (differs only in the sandbox)."""
        return self.root / inside.lstrip("/")


@dataclass(frozen=True)
class AgentConfig:
    """The pjsua2 user agent that answers AI lines; registered as PJSIP endpoint `username`."""

    username: str = "agent"
    password: str = ""
    """Empty: generated on the box (`secrets/agent_password`)."""
    bind: str = "127.0.0.1"
    port: int = 5070
    voice: bool = True
    """Answer AI lines with the voice agent (local models); false: play the line's greeting."""
    max_calls: int = 4
    """Concurrent AI calls. The pjsua2-python wheel is built with PJSUA_MAX_CALLS=4, so 4 is
    also the ceiling; calls beyond it hear "all circuits are busy" from Asterisk."""


@dataclass(frozen=True)
class ModelsConfig:
    """Local models (models/manifest.toml)."""

    dir: Path = Path("/var/lib/callvault/models")
    """Where `callvault models install` assembles the model files."""
    profile: str = "auto"
    """`cpu`, `gpu`, or `auto`: gpu when an engine here can use a GPU, else cpu."""


@dataclass(frozen=True)
class CalDavConfig:
    """`[lines.caldav]`: the office's own CalDAV calendar on the LAN, for a playbook line.

    Its busy events are taken out of the free slots, and each booking is written to it as an
    event that names no one (appliance.voice.dialogue.caldav). The store stays the record:
    when the server is down the agent books from the store and the event follows later."""

    url: str
    """`http(s)://ADDRESS[:PORT]/path/` of the calendar collection: a private, loopback or
    link-local IP literal (no name lookups, nothing leaves the premises). Prefer https on a
    shared LAN: servers ask for Basic auth, which over http shows the password on the wire."""
    username: str = ""
    """Empty: no authentication."""
    password_file: Path | None = None
    """File whose first line is the password (required with `username`; keep it 0600, e.g.
    `<state_dir>/secrets/caldav_<line>`). Never a string in this file."""
    ca_file: Path | None = None
    """PEM CA bundle for an https server with its own CA (None: the system's CAs)."""
    timeout_s: float = 3.0
    """Per request to the calendar (connect, answer). After one failure calls stop asking it
    until `retry_s` has passed, so an outage costs one caller at most this wait."""
    retry_s: float = 60.0
    """After a failure: how long the calendar is left alone before bookings not yet in it
    are written again (the agent books from the store meanwhile)."""


@dataclass(frozen=True)
class LineConfig:
    """A number callers dial, and what answers it."""

    name: str
    extension: str
    kind: LineKind = "agent"
    """`agent`: the voice agent answers; `echo`/`announcement`: Asterisk itself (test lines)."""
    record_legs: tuple[Leg, ...] = ("mixed",)
    """Which audio to record: `caller` (what the caller says), `callee`, `mixed` (both)."""
    recording: RecordingPolicy = "always"
    """`always`: from the first ring; `after-consent`: the agent asks and starts recording over
    AMI only after the caller agrees; `on-demand`: only when started over AMI; `off`: never."""
    consent_prompt: str = (
        "This call is handled by an AI assistant and recorded. Press 1 or say yes to agree. "
        "If you do not agree, hang up or press 2."
    )
    """What an `after-consent` line says before anything else."""

    @property
    def record_from_start(self) -> bool:
        return self.recording == "always" and bool(self.record_legs)

    greeting: Path | None = None
    """WAV (8 kHz mono 16-bit) played on answer when the voice models are not available."""
    greeting_text: str = ""
    """What the voice agent says on answer (spoken by the line's voice)."""
    system_prompt: str = ""
    """The LLM's instructions for this line (empty: a cautious receptionist default)."""
    transfer_to: str = ""
    """Extension that takes the call when the caller asks for a person (empty: no transfer)."""
    announcement: str = "hello-world"
    """Asterisk sound played by `announcement` lines."""
    max_duration_s: int = 3600
    language: str = "en"
    """ISO 639-1 code the agent hears and speaks (`auto`: Whisper detects it per call and the
    voice follows; a language without an installed voice falls back to English)."""
    voice: str = ""
    """Manifest name of the Piper voice (empty: the manifest's voice for `language`)."""
    purpose: str = "Answering calls to the business: questions, messages and appointments"
    """Why this line processes callers' data (records of processing, access exports)."""
    lawful_basis: LawfulBasis = "legitimate-interest"
    """GDPR Art. 6(1) basis: consent, contract, legal-obligation, vital-interests, public-task
    or legitimate-interest."""
    summary_schema: Path | None = None
    """JSON Schema the post-call report must validate against (None: the built-in default:
    purpose, caller name and contact, need, appointment slot, follow-up, opt-out)."""
    retention_days: Mapping[str, int] = field(default_factory=dict)
    """Per-category overrides of `[privacy.retention]` for this line's data, in days."""
    erase_on_opt_out: bool = False
    """When a caller asks not to be contacted again (the post-call report's `opt_out`), the
    number always goes on the do-not-call list; true: their data is then erased too, keeping
    only the blocking entry."""
    playbook: PlaybookConfig | None = None
    """`[lines.playbook]`: the facts the agent may state, the tasks and slots it handles, and
    the calendar it books into (appliance.voice.dialogue.playbook). None: free-form LLM."""
    caldav: CalDavConfig | None = None
    """`[lines.caldav]`: an office CalDAV calendar on the LAN for the playbook's bookings
    (None: the store's calendar alone)."""


@dataclass(frozen=True)
class ExtensionConfig:
    """A desk phone / softphone user."""

    number: str
    name: str
    password: str = ""
    """Empty: generated on the box (`secrets/ext_<number>`)."""


@dataclass(frozen=True)
class IpPeerConfig:
    """A SIP peer identified by its source address, no digest auth (load generator, IP trunk)."""

    name: str
    match: str
    """Source address (e.g. `127.0.0.2`); calls from it reach the lines only."""


@dataclass(frozen=True)
class RouteConfig:
    """A static route, e.g. to the SIP trunk's network through the LAN router."""

    destination: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    """Must lie in the LAN or the voice VLAN subnet (a directly connected next hop)."""


@dataclass(frozen=True)
class NetworkConfig:
    """The box's own IPv4 network, applied with pyroute2 by `callvault net apply`."""

    lan_interface: str = ""
    """The LAN interface (e.g. `eth0`); empty: the appliance leaves the network alone."""
    lan_address: ipaddress.IPv4Interface | None = None
    """The box's LAN address with prefix (`192.0.2.10/24`); other addresses on it are removed."""
    voice_vlan_id: int = 0
    """802.1Q id of the phones' VLAN on the LAN interface; 0: no voice VLAN."""
    voice_vlan_address: ipaddress.IPv4Interface | None = None
    """The box's address in the voice VLAN (required with a voice VLAN)."""
    routes: tuple[RouteConfig, ...] = ()

    @property
    def vlan_interface(self) -> str:
        """Kernel name of the voice VLAN interface (`eth0.20`), empty without one."""
        return f"{self.lan_interface}.{self.voice_vlan_id}" if self.voice_vlan_id else ""


RETENTION_CATEGORIES = (
    "recording",
    "transcript",
    "report",
    "cdr",
    "contact",
    "consent",
    "audit",
    "bookkeeping",
)


@dataclass(frozen=True)
class RetentionConfig:
    """How long each category of data is kept, in days (0: not kept after the call ends).

    Defaults follow what the hosted services in the seeds promise: CDRs 3 years (billing and
    disputes), bookkeeping 7 years (Swedish Bookkeeping Act), contact data the relationship +
    12 months, security/audit logs 5 years (a typical limitation period for claims).
    `contact` also governs campaign leads (counted from the last import listing the lead or
    its last dial attempt) and appointments booked on calls (from the appointment's end).
    """

    days: Mapping[str, int] = field(
        default_factory=lambda: {
            "recording": 90,
            "transcript": 90,
            "report": 365,
            "cdr": 3 * 365,
            "contact": 395,
            "consent": 3 * 365,
            "audit": 5 * 365,
            "bookkeeping": 7 * 365,
        }
    )
    purge_interval_h: int = 24
    """How often the purge job runs (the systemd timer uses the same figure)."""


@dataclass(frozen=True)
class PrivacyConfig:
    """Encryption at rest, identifiers and the do-not-call list (appliance.privacy)."""

    key_source: Literal["file", "passphrase"] = "file"
    """`file`: a random master key in `master_key_file` (0600, created on first use);
    `passphrase`: the master key is scrypt(passphrase) and never stored."""
    master_key_file: Path | None = None
    """Default `<state_dir>/keys/master.key`. Keep it off the backup media: with it a backup
    of the database can open every key that was not shredded."""
    passphrase_file: Path | None = None
    """Required for `passphrase`: a root-only file holding it (e.g. a systemd credential).
    The scrypt salt and parameters are kept in `<state_dir>/keys/master.scrypt`."""
    default_region: str = "SE"
    """ISO country used to read numbers given without +<country code> (E.164 normalisation)."""
    retention: RetentionConfig = field(default_factory=RetentionConfig)

    def master_key_path(self, state_dir: Path) -> Path:
        return self.master_key_file or state_dir / "keys" / "master.key"


@dataclass(frozen=True)
class AdminConfig:
    """The admin listener: JSON API (and the admin UI) over HTTPS."""

    bind: str = "127.0.0.1"
    """Address to listen on; put the admin network's address here (the firewall role admits
    only the admin network)."""
    port: int = 8443
    tls_cert: Path | None = None
    """PEM certificate (a user-supplied one replaces the generated one). Default
    `<state_dir>/tls/admin.crt`, generated self-signed on first start."""
    tls_key: Path | None = None
    """PEM private key for `tls_cert` (default `<state_dir>/tls/admin.key`, 0600)."""

    def cert_paths(self, state_dir: Path) -> tuple[Path, Path]:
        return (
            self.tls_cert or state_dir / "tls" / "admin.crt",
            self.tls_key or state_dir / "tls" / "admin.key",
        )


@dataclass(frozen=True)
class BackupConfig:
    """Encrypted backups: `callvault backup create|verify|restore|list|run`."""

    dir: Path = Path("/var/lib/callvault/backups")
    """Where archives go (default `<state_dir>/backups`). Point it at other media on a box
    (the backup role's `/var/backups/callvault`); the master key never goes there."""
    keep: int = 7
    """How many verified archives `backup run` keeps; older ones are deleted."""
    work_dir: Path | None = None
    """Where create and verify unpack the database snapshot, which is not encrypted as a whole
    (about the database's size): default the system temp dir (`$TMPDIR`, private to the
    systemd unit). Never the backup media."""


@dataclass(frozen=True)
class OpsConfig:
    """Operating the box (issue 12): alert delivery, thresholds, logs. Alerts always show in
    the admin UI and the journal; e-mail and the webhook are optional and stay on the LAN."""

    smtp_host: str = ""
    """The customer's own SMTP relay for alert e-mails; empty: no e-mail."""
    smtp_port: int = 25
    smtp_starttls: bool = False
    """Upgrade the relay connection with STARTTLS (the relay's certificate is verified)."""
    smtp_from: str = ""
    """Sender address (required with smtp_host)."""
    smtp_to: tuple[str, ...] = ()
    """Recipients (required with smtp_host)."""
    webhook_url: str = ""
    """`http(s)://ADDRESS[:PORT]/path` on the LAN (a private, loopback or link-local IP
    literal, so no name lookup can send it off the premises): each alert is POSTed as JSON."""
    disk_min_free_pct: float = 5.0
    """Below this free share of a data disk the box is not ready (/readyz answers 503)."""
    disk_warn_free_pct: float = 15.0
    """Below this free share the "disk filling" alert fires."""
    deadline_warn_days: int = 5
    """Rights requests whose deadline is this close (or past) raise an alert."""
    cert_warn_days: int = 21
    """The admin TLS certificate raises an alert this many days before it expires."""
    check_interval_s: float = 60.0
    """How often `callvault serve` evaluates the alert conditions."""
    log_format: Literal["json", "text"] = "json"
    """JSON lines for journald (call ids as fields, personal data masked by type)."""
    log_level: str = "INFO"
    """The starting level; `callvault log-level LEVEL` changes it at run time."""


@dataclass(frozen=True)
class Config:
    state_dir: Path = Path("/var/lib/callvault")
    """Database, secrets and encrypted recordings live here."""
    database: Path = Path("/var/lib/callvault/callvault.db")
    recordings_dir: Path = Path("/var/lib/callvault/recordings")
    asterisk: AsteriskConfig = field(default_factory=AsteriskConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    lines: tuple[LineConfig, ...] = ()
    extensions: tuple[ExtensionConfig, ...] = ()
    ip_peers: tuple[IpPeerConfig, ...] = ()
    network: NetworkConfig = field(default_factory=NetworkConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    backup: BackupConfig = field(default_factory=BackupConfig)
    ops: OpsConfig = field(default_factory=OpsConfig)
    source: Path | None = None

    @property
    def secrets(self) -> SecretStore:
        return SecretStore(self.state_dir / "secrets")

    def ami_secret(self) -> str:
        return self.asterisk.ami_secret or self.secrets.get_or_create("ami_secret")

    def agent_password(self) -> str:
        return self.agent.password or self.secrets.get_or_create("agent_password")

    def extension_password(self, ext: ExtensionConfig) -> str:
        return ext.password or self.secrets.get_or_create(f"ext_{ext.number}")

    def line_by_extension(self, extension: str) -> LineConfig | None:
        return next((ln for ln in self.lines if ln.extension == extension), None)

    def line_by_name(self, name: str) -> LineConfig | None:
        return next((ln for ln in self.lines if ln.name == name), None)


def load(path: Path | None = None) -> Config:
    path = path or DEFAULT_PATH
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(str(path), "config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    return parse(raw, base_dir=path.parent.resolve(), source=path)


def parse(raw: dict[str, Any], *, base_dir: Path, source: Path | None = None) -> Config:
    top = _Section(raw, "", base_dir)
    state_dir = top.path("state_dir", Config.state_dir)
    cfg = Config(
        state_dir=state_dir,
        database=top.path("database", state_dir / "callvault.db"),
        recordings_dir=top.path("recordings_dir", state_dir / "recordings"),
        asterisk=_asterisk(top.section("asterisk")),
        agent=_agent(top.section("agent")),
        models=_models(top.section("models"), state_dir),
        lines=tuple(_line(s) for s in top.sections("lines")),
        extensions=tuple(_extension(s) for s in top.sections("extensions")),
        ip_peers=tuple(_ip_peer(s) for s in top.sections("ip_peers")),
        network=_network(top.section("network")),
        privacy=_privacy(top.section("privacy")),
        admin=_admin(top.section("admin")),
        backup=_backup(top.section("backup"), state_dir),
        ops=_ops(top.section("ops")),
        source=source,
    )
    top.reject_unknown()
    _check_numbering(cfg)
    return cfg


def _asterisk(s: _Section) -> AsteriskConfig:
    d = AsteriskConfig()
    cfg = AsteriskConfig(
        root=s.path("root", d.root),
        sandbox=s.flag("sandbox", d.sandbox),
        config_dir=s.text("config_dir", d.config_dir),
        ami_host=s.text("ami_host", d.ami_host),
        ami_port=s.port("ami_port", d.ami_port),
        ami_username=s.text("ami_username", d.ami_username),
        ami_secret=s.text("ami_secret", d.ami_secret),
        ami_connect_timeout_s=s.number("ami_connect_timeout_s", d.ami_connect_timeout_s),
        ami_reconnect_s=s.number("ami_reconnect_s", d.ami_reconnect_s),
        sip_bind=s.text("sip_bind", d.sip_bind),
        sip_port=s.port("sip_port", d.sip_port),
        rtp_start=s.port("rtp_start", d.rtp_start),
        rtp_end=s.port("rtp_end", d.rtp_end),
        spool_dir=s.text("spool_dir", d.spool_dir),
        cdr_log=s.text("cdr_log", d.cdr_log),
    )
    if cfg.rtp_end <= cfg.rtp_start:
        raise ConfigError(s.name("rtp_end"), "must be greater than rtp_start")
    if not _is_loopback(cfg.ami_host):
        # AMI can originate calls and run commands: it must never listen beyond the box.
        raise ConfigError(s.name("ami_host"), f"{cfg.ami_host!r} is not a loopback address")
    s.reject_unknown()
    return cfg


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _agent(s: _Section) -> AgentConfig:
    d = AgentConfig()
    cfg = AgentConfig(
        username=s.match("username", d.username, _SIP_USER, "letters, digits, _ . -"),
        password=s.text("password", d.password),
        bind=s.text("bind", d.bind),
        port=s.port("port", d.port),
        voice=s.flag("voice", d.voice),
        max_calls=s.integer("max_calls", d.max_calls, lo=1, hi=PJSUA_MAX_CALLS),
    )
    s.reject_unknown()
    return cfg


def _models(s: _Section, state_dir: Path) -> ModelsConfig:
    profile = s.text("profile", ModelsConfig.profile)
    if profile not in {"auto", "cpu", "gpu"}:
        raise ConfigError(s.name("profile"), f"{profile!r} is not auto, cpu or gpu")
    cfg = ModelsConfig(dir=s.path("dir", state_dir / "models"), profile=profile)
    s.reject_unknown()
    return cfg


def _recording_policy(s: _Section) -> RecordingPolicy:
    policy = s.text("recording", LineConfig.recording)
    if policy not in RECORDING_POLICIES:
        raise ConfigError(
            s.name("recording"), f"{policy!r} is not one of {', '.join(RECORDING_POLICIES)}"
        )
    return cast(RecordingPolicy, policy)


def _line(s: _Section) -> LineConfig:
    legs = s.strings("record_legs", list(LineConfig.record_legs))
    for i, leg in enumerate(legs):
        if leg not in LEGS:
            raise ConfigError(
                f"{s.name('record_legs')}[{i}]",
                f"unknown leg {leg!r} (expected one of {', '.join(LEGS)})",
            )
    if len(set(legs)) != len(legs):
        raise ConfigError(s.name("record_legs"), "lists a leg twice")
    kind = s.text("kind", LineConfig.kind)
    if kind not in LINE_KINDS:
        raise ConfigError(
            s.name("kind"), f"unknown kind {kind!r} (expected {', '.join(LINE_KINDS)})"
        )
    greeting = s.path("greeting", None) if "greeting" in s.raw else None
    cfg = LineConfig(
        name=s.match("name", None, _NAME, "lowercase letters, digits, _ and -"),
        extension=s.match("extension", None, _EXTENSION, "2 to 8 digits"),
        kind=cast(LineKind, kind),
        record_legs=tuple(cast(Leg, leg) for leg in legs),
        recording=_recording_policy(s),
        consent_prompt=s.text("consent_prompt", LineConfig.consent_prompt),
        greeting=greeting,
        greeting_text=s.text("greeting_text", ""),
        system_prompt=s.text("system_prompt", ""),
        transfer_to=s.text("transfer_to", ""),
        announcement=s.match(
            "announcement",
            LineConfig.announcement,
            re.compile(r"^[a-z0-9/_-]{1,64}$"),
            "a sound name",
        ),
        max_duration_s=s.integer("max_duration_s", LineConfig.max_duration_s, lo=10, hi=86400),
        language=s.match("language", LineConfig.language, _LANGUAGE, "an ISO 639-1 code or auto"),
        voice=s.text("voice", ""),
        purpose=s.text("purpose", LineConfig.purpose),
        lawful_basis=_lawful_basis(s),
        summary_schema=s.path("summary_schema", None) if "summary_schema" in s.raw else None,
        retention_days=_retention_days(s.section("retention_days"), allow_empty=True),
        erase_on_opt_out=s.flag("erase_on_opt_out", LineConfig.erase_on_opt_out),
        playbook=_playbook(s),
        caldav=_caldav(s),
    )
    s.reject_unknown()
    return cfg


def _playbook(s: _Section) -> PlaybookConfig | None:
    if "playbook" not in s.raw:
        return None
    return parse_playbook(s.section("playbook").raw, s.name("playbook"))


def _caldav(line: _Section) -> CalDavConfig | None:
    if "caldav" not in line.raw:
        return None
    s = line.section("caldav")
    if "playbook" not in line.raw:
        raise ConfigError(s.name("url"), "a CalDAV calendar needs the line's [lines.playbook]")
    if "password" in s.raw:
        raise ConfigError(
            s.name("password"), "keep the password out of this file: name a file in password_file"
        )
    from urllib.parse import urlsplit

    url = s.text("url", None)
    _check_lan_url(url, s.name("url"))
    if urlsplit(url).username is not None:
        raise ConfigError(s.name("url"), "no credentials in the URL: use username/password_file")
    username = s.text("username", "")
    pw_file = s.path("password_file", None) if "password_file" in s.raw else None
    if bool(username) != (pw_file is not None):
        raise ConfigError(s.name("password_file"), "username and password_file go together")
    timeout = s.number("timeout_s", CalDavConfig.timeout_s)
    if timeout > 30:
        raise ConfigError(s.name("timeout_s"), "must be at most 30 (a caller is waiting)")
    retry = s.number("retry_s", CalDavConfig.retry_s)
    if not 5 <= retry <= 3600:
        raise ConfigError(s.name("retry_s"), "must be between 5 and 3600")
    cfg = CalDavConfig(
        url=url if url.endswith("/") else url + "/",
        username=username,
        password_file=pw_file,
        ca_file=s.path("ca_file", None) if "ca_file" in s.raw else None,
        timeout_s=timeout,
        retry_s=retry,
    )
    s.reject_unknown()
    return cfg


def _lawful_basis(s: _Section) -> LawfulBasis:
    basis = s.text("lawful_basis", LineConfig.lawful_basis)
    if basis not in LAWFUL_BASES:
        raise ConfigError(
            s.name("lawful_basis"), f"{basis!r} is not one of {', '.join(LAWFUL_BASES)}"
        )
    return cast(LawfulBasis, basis)


def _retention_days(s: _Section, *, allow_empty: bool) -> dict[str, int]:
    out = {}
    for key in list(s.raw):
        if key not in RETENTION_CATEGORIES:
            raise ConfigError(
                s.name(key),
                f"unknown data category (expected {', '.join(RETENTION_CATEGORIES)})",
            )
        if allow_empty and key in ("audit", "contact"):
            # Per line (allow_empty): one audit chain per box, and people are not per line.
            raise ConfigError(
                s.name(key), f"not kept per line: set [privacy.retention.days] {key} instead"
            )
        out[key] = s.integer(key, 0, lo=0, hi=100 * 365)
    s.reject_unknown()
    if not allow_empty:
        return {**RetentionConfig().days, **out}
    return out


def _retention(s: _Section) -> RetentionConfig:
    cfg = RetentionConfig(
        days=_retention_days(s.section("days"), allow_empty=False),
        purge_interval_h=s.integer(
            "purge_interval_h", RetentionConfig.purge_interval_h, lo=1, hi=24 * 7
        ),
    )
    s.reject_unknown()
    return cfg


def _extension(s: _Section) -> ExtensionConfig:
    cfg = ExtensionConfig(
        number=s.match("number", None, _EXTENSION, "2 to 8 digits"),
        name=s.text("name", ""),
        password=s.text("password", ""),
    )
    if cfg.password and len(cfg.password) < 12:
        raise ConfigError(
            s.name("password"), "must be at least 12 characters (or empty: generated)"
        )
    s.reject_unknown()
    return cfg


def _ip_peer(s: _Section) -> IpPeerConfig:
    try:
        match = str(ipaddress.ip_address(s.text("match", None)))
    except ValueError:
        raise ConfigError(s.name("match"), "must be an IP address") from None
    cfg = IpPeerConfig(
        name=s.match("name", None, _NAME, "lowercase letters, digits, _ and -"), match=match
    )
    s.reject_unknown()
    return cfg


_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def _ipv4_interface(s: _Section, key: str) -> ipaddress.IPv4Interface | None:
    if key not in s.raw:
        s.used.add(key)
        return None
    value = s.text(key, None)
    try:
        iface = ipaddress.IPv4Interface(value)
    except ValueError:
        raise ConfigError(s.name(key), f"{value!r} is not an IPv4 address/prefix") from None
    if "/" not in value:
        raise ConfigError(s.name(key), f"{value!r} needs a prefix length (e.g. /24)")
    edges = (iface.network.network_address, iface.network.broadcast_address)
    if iface.network.prefixlen < 31 and iface.ip in edges:
        raise ConfigError(s.name(key), f"{value!r} is the network or broadcast address")
    return iface


def _route(s: _Section) -> RouteConfig:
    dst, gw = s.text("destination", None), s.text("gateway", None)
    try:
        destination = ipaddress.IPv4Network(dst)
    except ValueError as exc:
        raise ConfigError(s.name("destination"), f"{dst!r} is not an IPv4 network: {exc}") from None
    try:
        gateway = ipaddress.IPv4Address(gw)
    except ValueError:
        raise ConfigError(s.name("gateway"), f"{gw!r} is not an IPv4 address") from None
    s.reject_unknown()
    return RouteConfig(destination=destination, gateway=gateway)


def _network(s: _Section) -> NetworkConfig:
    lan = s.text("lan_interface", "")
    if lan and not _IFNAME.match(lan):
        raise ConfigError(s.name("lan_interface"), f"{lan!r} is not an interface name")
    cfg = NetworkConfig(
        lan_interface=lan,
        lan_address=_ipv4_interface(s, "lan_address"),
        voice_vlan_id=s.integer("voice_vlan_id", 0, lo=0, hi=4094),
        voice_vlan_address=_ipv4_interface(s, "voice_vlan_address"),
        routes=tuple(_route(r) for r in s.sections("routes")),
    )
    s.reject_unknown()
    _check_network(cfg, s)
    return cfg


def _check_network(cfg: NetworkConfig, s: _Section) -> None:
    """Everything that can be judged without looking at the box: checked before any change."""
    if not cfg.lan_interface:
        for key in ("lan_address", "voice_vlan_id", "voice_vlan_address", "routes"):
            if key in s.raw:
                raise ConfigError(s.name(key), "needs network.lan_interface")
        return
    if cfg.lan_address is None:
        raise ConfigError(s.name("lan_address"), "is required with network.lan_interface")
    if cfg.voice_vlan_id and cfg.voice_vlan_address is None:
        raise ConfigError(s.name("voice_vlan_address"), "is required with a voice VLAN")
    if cfg.voice_vlan_address is not None and not cfg.voice_vlan_id:
        raise ConfigError(s.name("voice_vlan_address"), "set without network.voice_vlan_id")
    if len(cfg.vlan_interface) > 15:
        raise ConfigError(
            s.name("voice_vlan_id"),
            f"VLAN interface name {cfg.vlan_interface!r} is longer than the kernel's 15 characters",
        )
    connected = {"lan_address": cfg.lan_address.network}
    if cfg.voice_vlan_address is not None:
        vlan_net = cfg.voice_vlan_address.network
        if vlan_net.overlaps(cfg.lan_address.network):
            raise ConfigError(
                s.name("voice_vlan_address"),
                f"subnet {vlan_net} overlaps the LAN subnet {cfg.lan_address.network}",
            )
        connected["voice_vlan_address"] = vlan_net
    _check_routes(cfg.routes, connected, s.name("routes"))


def _check_routes(
    routes: tuple[RouteConfig, ...], connected: dict[str, ipaddress.IPv4Network], name: str
) -> None:
    seen: dict[ipaddress.IPv4Network, int] = {}
    subnets = ", ".join(map(str, connected.values()))
    for i, route in enumerate(routes):
        field_ = f"{name}[{i}]"
        for key, net in connected.items():
            if route.destination.overlaps(net):
                raise ConfigError(
                    f"{field_}.destination",
                    f"{route.destination} overlaps the directly connected {key} subnet {net}",
                )
        if not any(route.gateway in net for net in connected.values()):
            raise ConfigError(
                f"{field_}.gateway",
                f"{route.gateway} is in no directly connected subnet ({subnets})",
            )
        if route.destination in seen:
            raise ConfigError(
                f"{field_}.destination",
                f"{route.destination} is routed twice (also routes[{seen[route.destination]}])",
            )
        seen[route.destination] = i


def _privacy(s: _Section) -> PrivacyConfig:
    import phonenumbers

    source = s.text("key_source", PrivacyConfig.key_source)
    if source not in {"file", "passphrase"}:
        raise ConfigError(s.name("key_source"), f"unknown source {source!r} (file, passphrase)")
    key_file = s.path("master_key_file", None) if "master_key_file" in s.raw else None
    pass_file = s.path("passphrase_file", None) if "passphrase_file" in s.raw else None
    if source == "passphrase" and pass_file is None:
        raise ConfigError(s.name("passphrase_file"), "is required when key_source = 'passphrase'")
    region = s.match(
        "default_region", PrivacyConfig.default_region, re.compile(r"^[A-Z]{2}$"), "ISO 3166 code"
    )
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(
            s.name("default_region"), f"{region!r} is not a region phonenumbers knows"
        )
    cfg = PrivacyConfig(
        key_source=cast(Literal["file", "passphrase"], source),
        master_key_file=key_file,
        passphrase_file=pass_file,
        default_region=region,
        retention=_retention(s.section("retention")),
    )
    s.reject_unknown()
    return cfg


def _admin(s: _Section) -> AdminConfig:
    cert = s.path("tls_cert", None) if "tls_cert" in s.raw else None
    key = s.path("tls_key", None) if "tls_key" in s.raw else None
    if (cert is None) != (key is None):
        raise ConfigError(s.name("tls_cert" if cert is None else "tls_key"), "set both or neither")
    cfg = AdminConfig(
        bind=s.text("bind", AdminConfig.bind),
        port=s.port("port", AdminConfig.port),
        tls_cert=cert,
        tls_key=key,
    )
    s.reject_unknown()
    return cfg


def _backup(s: _Section, state_dir: Path) -> BackupConfig:
    cfg = BackupConfig(
        dir=s.path("dir", state_dir / "backups"),
        keep=s.integer("keep", BackupConfig.keep, lo=1, hi=1000),
        work_dir=s.path("work_dir", None) if "work_dir" in s.raw else None,
    )
    s.reject_unknown()
    return cfg


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")


def _ops(s: _Section) -> OpsConfig:
    d = OpsConfig()
    smtp_host = s.text("smtp_host", d.smtp_host)
    smtp_from = s.text("smtp_from", d.smtp_from)
    smtp_to = tuple(s.strings("smtp_to", []))
    if smtp_host:
        if not smtp_from:
            raise ConfigError(s.name("smtp_from"), "is required with smtp_host")
        if not smtp_to:
            raise ConfigError(s.name("smtp_to"), "is required with smtp_host")
    for key, addrs in (("smtp_from", (smtp_from,) if smtp_from else ()), ("smtp_to", smtp_to)):
        for addr in addrs:
            if not _EMAIL.match(addr):
                raise ConfigError(s.name(key), f"{addr!r} is not an e-mail address")
    webhook = s.text("webhook_url", d.webhook_url)
    if webhook:
        _check_lan_url(webhook, s.name("webhook_url"))
    fmt = s.text("log_format", d.log_format)
    if fmt not in ("json", "text"):
        raise ConfigError(s.name("log_format"), f"must be 'json' or 'text', got {fmt!r}")
    level = s.text("log_level", d.log_level).upper()
    if level not in _LOG_LEVELS:
        raise ConfigError(s.name("log_level"), f"must be one of {', '.join(_LOG_LEVELS)}")
    min_free = s.number("disk_min_free_pct", d.disk_min_free_pct)
    warn_free = s.number("disk_warn_free_pct", d.disk_warn_free_pct)
    if not min_free < warn_free < 100:
        raise ConfigError(
            s.name("disk_warn_free_pct"), "must be above disk_min_free_pct and below 100"
        )
    cfg = OpsConfig(
        smtp_host=smtp_host,
        smtp_port=s.port("smtp_port", d.smtp_port),
        smtp_starttls=s.flag("smtp_starttls", d.smtp_starttls),
        smtp_from=smtp_from,
        smtp_to=smtp_to,
        webhook_url=webhook,
        disk_min_free_pct=min_free,
        disk_warn_free_pct=warn_free,
        deadline_warn_days=s.integer("deadline_warn_days", d.deadline_warn_days, lo=0, hi=90),
        cert_warn_days=s.integer("cert_warn_days", d.cert_warn_days, lo=0, hi=365),
        check_interval_s=s.number("check_interval_s", d.check_interval_s),
        log_format=cast(Literal["json", "text"], fmt),
        log_level=level,
    )
    s.reject_unknown()
    return cfg


def _check_lan_url(url: str, name: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(name, f"{url!r} is not an http(s) URL")
    try:
        addr = ipaddress.ip_address(parts.hostname)
    except ValueError:
        raise ConfigError(
            name, f"{parts.hostname!r}: use the LAN address, not a name (no lookups off the box)"
        ) from None
    if not (addr.is_private or addr.is_loopback or addr.is_link_local) or addr.is_global:
        raise ConfigError(name, f"{addr} is not a LAN address (private, loopback, link-local)")


def _check_numbering(cfg: Config) -> None:
    seen: dict[str, str] = {}
    for i, line in enumerate(cfg.lines):
        for key, value in (("extension", line.extension), ("name", line.name)):
            tag = f"{key}:{value}"
            if tag in seen:
                raise ConfigError(
                    f"lines[{i}].{key}", f"duplicate {key} {value!r} (also {seen[tag]})"
                )
            seen[tag] = f"lines[{i}]"
    for i, ext in enumerate(cfg.extensions):
        tag = f"extension:{ext.number}"
        if tag in seen:
            raise ConfigError(
                f"extensions[{i}].number", f"duplicate extension {ext.number!r} (also {seen[tag]})"
            )
        seen[tag] = f"extensions[{i}]"
    numbers = {e.number for e in cfg.extensions}
    for i, line in enumerate(cfg.lines):
        if line.transfer_to and line.transfer_to not in numbers:
            raise ConfigError(
                f"lines[{i}].transfer_to", f"{line.transfer_to!r} is not a configured extension"
            )
    names = {e.number for e in cfg.extensions} | {p.name for p in cfg.ip_peers}
    if cfg.agent.username in names:
        raise ConfigError("agent.username", "collides with an extension or peer name")
    if len({p.name for p in cfg.ip_peers}) != len(cfg.ip_peers):
        raise ConfigError("ip_peers", "duplicate peer name")


class _Section:
    """Typed reads from one TOML table, tracking keys so unknown ones are rejected."""

    def __init__(self, raw: dict[str, Any], prefix: str, base_dir: Path) -> None:
        self.raw = raw
        self.prefix = prefix
        self.base_dir = base_dir
        self.used: set[str] = set()

    def name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def _get(self, key: str, default: Any, types: tuple[type, ...], what: str) -> Any:
        self.used.add(key)
        if key not in self.raw:
            if default is None:
                raise ConfigError(self.name(key), "is required")
            return default
        value = self.raw[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ConfigError(self.name(key), f"must be {what}, got {type(value).__name__}")
        return value

    def text(self, key: str, default: str | None) -> str:
        return cast(str, self._get(key, default, (str,), "a string"))

    def flag(self, key: str, default: bool) -> bool:
        return cast(bool, self._get(key, default, (bool,), "true or false"))

    def number(self, key: str, default: float) -> float:
        value = float(self._get(key, default, (int, float), "a number"))
        if value <= 0:
            raise ConfigError(self.name(key), "must be positive")
        return value

    def integer(self, key: str, default: int, *, lo: int, hi: int) -> int:
        value = cast(int, self._get(key, default, (int,), "an integer"))
        if not lo <= value <= hi:
            raise ConfigError(self.name(key), f"must be between {lo} and {hi}, got {value}")
        return value

    def port(self, key: str, default: int) -> int:
        return self.integer(key, default, lo=1, hi=65535)

    def match(self, key: str, default: str | None, pattern: re.Pattern[str], what: str) -> str:
        value = self._get(key, default, (str, int), "a string")
        value = str(value)
        if not pattern.match(value):
            raise ConfigError(self.name(key), f"{value!r} is not valid ({what})")
        return value

    def path(self, key: str, default: Path | None) -> Path:
        value = self._get(key, None if default is None else str(default), (str,), "a path")
        p = Path(value)
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    def strings(self, key: str, default: list[str]) -> list[str]:
        value = cast(list[Any], self._get(key, default, (list,), "a list of strings"))
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ConfigError(f"{self.name(key)}[{i}]", "must be a string")
        return cast(list[str], value)

    def section(self, key: str) -> _Section:
        value = self._get(key, {}, (dict,), "a table")
        return _Section(cast(dict[str, Any], value), self.name(key), self.base_dir)

    def sections(self, key: str) -> list[_Section]:
        value = cast(list[Any], self._get(key, [], (list,), "an array of tables ([[...]])"))
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise ConfigError(f"{self.name(key)}[{i}]", "must be a table")
            out.append(_Section(item, f"{self.name(key)}[{i}]", self.base_dir))
        return out

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.raw) - self.used)
        if unknown:
            raise ConfigError(self.name(unknown[0]), "unknown key (check the spelling)")
