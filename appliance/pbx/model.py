"""The PBX objects an IT admin edits: trunks, extensions, inbound routes, outbound rules.

Every object validates itself on construction (`check()`), naming the field that is wrong, and
`check_config()` checks the whole set together (references, collisions with the TOML config's
lines and extensions) so a change that would render a broken or ambiguous Asterisk config is
refused before anything is written.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from appliance.config import Config
from appliance.errors import ConfigError

TrunkAuth = Literal["registration", "ip"]
Transport = Literal["udp", "tcp", "tls"]
KINDS = ("trunk", "extension", "route", "outbound")
CODECS = ("ulaw", "alaw", "gsm", "g722", "opus", "g729")
# Dialled numbers that always reach the trunk, whatever an extension's outbound rules say.
DEFAULT_EMERGENCY = ("112", "911", "999")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_NUMBER = re.compile(r"^[0-9]{2,8}$")
_DID = re.compile(r"^\+?[0-9]{2,20}$")
_CALLER = re.compile(r"^\+?[0-9]{2,20}$")
_PREFIX = re.compile(r"^\+?[0-9]{1,20}$")
# Asterisk extension patterns the rules accept: `_` then digits, X Z N, [ranges], `.` or `!`.
_PATTERN = re.compile(r"^(_(\+?([0-9XZN]|\[[0-9-]+\])+[.!]?)|\+?[0-9]{1,20})$")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")
_SOUND = re.compile(r"^[a-z0-9][a-z0-9_/-]{0,80}$")
_DISPLAY = re.compile(r'^[^"<>;\n\r\\]{0,40}$')
_HOURS = re.compile(
    r"^(mon|tue|wed|thu|fri|sat|sun)(-(mon|tue|wed|thu|fri|sat|sun))? ([0-2][0-9]):([0-5][0-9])-([0-2][0-9]):([0-5][0-9])$"  # noqa: E501
)


def _need(ok: bool, where: str, message: str) -> None:
    if not ok:
        raise ConfigError(where, message)


@dataclass(frozen=True)
class Trunk:
    name: str
    host: str
    auth: TrunkAuth = "ip"
    port: int = 5060
    transport: Transport = "udp"
    username: str = ""
    password: str = ""
    """Plaintext only in memory: the store keeps it sealed with the keyring."""
    codecs: tuple[str, ...] = ("ulaw", "alaw")
    dids: tuple[str, ...] = ()
    caller_id: str = ""
    """Outbound caller ID (number) presented when no rule gives one."""
    max_channels: int = 0
    """Concurrent calls over the trunk, both directions; 0 = no limit."""
    enabled: bool = True

    def check(self, where: str = "trunk") -> None:
        w = f"{where} {self.name!r}"
        _need(bool(_NAME.match(self.name)), f"{w}.name", "lowercase letters, digits, '-' (max 31)")
        _need(
            _valid_host(self.host), f"{w}.host", f"{self.host!r} is not an IP address or host name"
        )
        _need(self.auth in ("registration", "ip"), f"{w}.auth", "registration or ip")
        _need(1 <= self.port <= 65535, f"{w}.port", "1..65535")
        _need(self.transport in ("udp", "tcp", "tls"), f"{w}.transport", "udp, tcp or tls")
        if self.auth == "registration":
            _need(
                bool(re.match(r"^[A-Za-z0-9_.+-]{1,64}$", self.username)),
                f"{w}.username",
                "needed for a registration trunk (letters, digits, _ . + -)",
            )
            _need(0 < len(self.password) <= 128, f"{w}.password", "needed for a registration trunk")
        _need(
            not any(c in self.password for c in "\n\r;"),
            f"{w}.password",
            "must not contain newlines or ';'",
        )
        _need(bool(self.codecs), f"{w}.codecs", "at least one codec")
        for c in self.codecs:
            _need(c in CODECS, f"{w}.codecs", f"unknown codec {c!r} (known: {', '.join(CODECS)})")
        for d in self.dids:
            _need(bool(_DID.match(d)), f"{w}.dids", f"{d!r} is not a number (digits, optional +)")
        _need(len(set(self.dids)) == len(self.dids), f"{w}.dids", "listed twice")
        _need(
            not self.caller_id or bool(_CALLER.match(self.caller_id)),
            f"{w}.caller_id",
            "digits, optional leading +",
        )
        _need(0 <= self.max_channels <= 1000, f"{w}.max_channels", "0 (no limit) .. 1000")


@dataclass(frozen=True)
class Extension:
    number: str
    name: str
    password: str = ""
    """Generated (appliance.pbx.apply.new_password); sealed at rest."""
    caller_id: str = ""
    """Outbound caller ID over a trunk; empty = the rule's or the trunk's."""
    voicemail: bool = False
    takeover_lines: tuple[str, ...] = ()
    """Lines (by name) whose ringing calls this phone may pick up (*8 + line extension)."""
    enabled: bool = True
    mac: str = ""
    """Desk phone MAC for auto-provisioning (12 hex digits), optional."""

    def check(self, where: str = "extension") -> None:
        w = f"{where} {self.number!r}"
        _need(bool(_NUMBER.match(self.number)), f"{w}.number", "2..8 digits")
        _need(
            bool(self.name.strip()) and bool(_DISPLAY.match(self.name)),
            f"{w}.name",
            "non-empty, max 40, no quotes, <, >, ; or \\",
        )
        _need(
            len(self.password) >= 16,
            f"{w}.password",
            "generated passwords are at least 16 characters",
        )
        _need(
            bool(re.match(r"^[A-Za-z0-9_-]+$", self.password)),
            f"{w}.password",
            "URL-safe characters only",
        )
        _need(
            not self.caller_id or bool(_CALLER.match(self.caller_id)),
            f"{w}.caller_id",
            "digits, optional leading +",
        )
        _need(
            not self.mac or bool(re.match(r"^[0-9a-f]{12}$", self.mac)),
            f"{w}.mac",
            "12 lowercase hex digits",
        )


@dataclass(frozen=True)
class Override:
    """Callers whose number starts with `prefix` go to `destination` whatever the time."""

    prefix: str
    destination: str


@dataclass(frozen=True)
class InboundRoute:
    did: str
    destination: str
    """Where calls go while open (or always, without hours): line:NAME, extension:NUM,
    group:NUM,NUM..., announcement:SOUND, hangup."""
    closed_destination: str = ""
    hours: tuple[str, ...] = ()
    """Opening hours, e.g. 'mon-fri 08:00-17:00'; empty = always open."""
    holidays: tuple[str, ...] = ()
    """ISO dates closed all day."""
    timezone: str = "UTC"
    overrides: tuple[Override, ...] = ()
    name: str = ""

    def check(self, where: str = "route") -> None:
        w = f"{where} {self.did!r}"
        _need(bool(_DID.match(self.did)), f"{w}.did", "digits, optional leading +")
        check_destination(self.destination, f"{w}.destination")
        if self.hours or self.holidays:
            _need(
                bool(self.closed_destination),
                f"{w}.closed_destination",
                "needed with opening hours or holidays",
            )
        if self.closed_destination:
            check_destination(self.closed_destination, f"{w}.closed_destination")
        for h in self.hours:
            m = _HOURS.match(h)
            _need(m is not None, f"{w}.hours", f"{h!r} is not like 'mon-fri 08:00-17:00'")
            assert m is not None
            start, end = (int(m.group(4)), int(m.group(5))), (int(m.group(6)), int(m.group(7)))
            _need(
                start < end <= (24, 0) and start[0] < 24,
                f"{w}.hours",
                f"{h!r}: start must be before end, within one day",
            )
        for d in self.holidays:
            try:
                date.fromisoformat(d)
            except ValueError:
                raise ConfigError(
                    f"{w}.holidays", f"{d!r} is not an ISO date (YYYY-MM-DD)"
                ) from None
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{w}.timezone", f"unknown time zone {self.timezone!r}") from None
        for i, o in enumerate(self.overrides):
            _need(
                bool(_PREFIX.match(o.prefix)),
                f"{w}.overrides[{i}].prefix",
                "digits, optional leading +",
            )
            check_destination(o.destination, f"{w}.overrides[{i}].destination")

    def is_open(self, at: datetime) -> bool:
        """Whether the route is in opening hours at `at` (an aware datetime)."""
        if not self.hours and not self.holidays:
            return True
        local = at.astimezone(ZoneInfo(self.timezone))
        if local.date().isoformat() in self.holidays:
            return False
        if not self.hours:
            return True
        day = local.weekday()
        minute = local.hour * 60 + local.minute
        for h in self.hours:
            m = _HOURS.match(h)
            assert m is not None
            first = DAYS.index(m.group(1))
            last = DAYS.index(m.group(3)) if m.group(3) else first
            days = (
                range(first, last + 1) if first <= last else [*range(first, 7), *range(0, last + 1)]
            )
            start = int(m.group(4)) * 60 + int(m.group(5))
            end = int(m.group(6)) * 60 + int(m.group(7))
            if day in days and start <= minute < end:
                return True
        return False


@dataclass(frozen=True)
class OutboundRule:
    name: str
    patterns: tuple[str, ...]
    """Asterisk patterns the members may dial, e.g. '_0[1-9]X.' (national), '_00X.' (abroad)."""
    trunk: str
    members: tuple[str, ...] = ()
    """Extension numbers, or line:NAME for the AI lines' calls; empty = every extension."""
    caller_id: str = ""
    strip: int = 0
    """Leading digits removed before the number goes to the trunk."""
    prepend: str = ""

    def check(self, where: str = "outbound") -> None:
        w = f"{where} {self.name!r}"
        _need(bool(_NAME.match(self.name)), f"{w}.name", "lowercase letters, digits, '-' (max 31)")
        _need(bool(self.patterns), f"{w}.patterns", "at least one pattern")
        for p in self.patterns:
            _need(
                bool(_PATTERN.match(p)),
                f"{w}.patterns",
                f"{p!r} is not a dial pattern like _0X. or 0123",
            )
        for m in self.members:
            _need(
                bool(_NUMBER.match(m)) or (m.startswith("line:") and bool(_NAME.match(m[5:]))),
                f"{w}.members",
                f"{m!r} is not an extension number or line:NAME",
            )
        _need(
            not self.caller_id or bool(_CALLER.match(self.caller_id)),
            f"{w}.caller_id",
            "digits, optional leading +",
        )
        _need(0 <= self.strip <= 10, f"{w}.strip", "0..10")
        _need(not self.prepend or bool(_PREFIX.match(self.prepend)), f"{w}.prepend", "digits")


@dataclass(frozen=True)
class Settings:
    emergency: tuple[str, ...] = DEFAULT_EMERGENCY
    lan: tuple[str, ...] = ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
    """Networks whose phones may reach SIP (plus each trunk's host)."""
    fail_threshold: int = 10
    fail_window_s: int = 300
    block_s: int = 3600
    provisioning_port: int = 0
    """HTTP port desk phones fetch their provisioning file from (LAN only); 0 = off."""

    def check(self, where: str = "settings") -> None:
        for e in self.emergency:
            _need(bool(re.match(r"^[0-9]{2,6}$", e)), f"{where}.emergency", f"{e!r}: 2..6 digits")
        for n in self.lan:
            try:
                ipaddress.ip_network(n, strict=False)
            except ValueError:
                raise ConfigError(
                    f"{where}.lan", f"{n!r} is not a network like 192.168.1.0/24"
                ) from None
        _need(1 <= self.fail_threshold <= 1000, f"{where}.fail_threshold", "1..1000")
        _need(1 <= self.fail_window_s <= 86400, f"{where}.fail_window_s", "1..86400")
        _need(1 <= self.block_s <= 30 * 86400, f"{where}.block_s", "1..2592000")
        _need(
            self.provisioning_port == 0 or 1024 <= self.provisioning_port <= 65535,
            f"{where}.provisioning_port",
            "0 (off) or 1024..65535",
        )


@dataclass(frozen=True)
class PbxConfig:
    """Everything the store holds, as one immutable snapshot (what a version records)."""

    trunks: tuple[Trunk, ...] = ()
    extensions: tuple[Extension, ...] = ()
    routes: tuple[InboundRoute, ...] = ()
    outbound: tuple[OutboundRule, ...] = ()
    settings: Settings = field(default_factory=Settings)


def check_destination(dest: str, where: str) -> None:
    kind, _, arg = dest.partition(":")
    if kind == "hangup" and not arg:
        return
    if kind == "line":
        _need(bool(_NAME.match(arg)), where, f"{dest!r}: line name expected")
    elif kind == "extension":
        _need(bool(_NUMBER.match(arg)), where, f"{dest!r}: extension number expected")
    elif kind == "group":
        members = arg.split(",")
        _need(
            all(_NUMBER.match(m) for m in members) and len(members) <= 20,
            where,
            f"{dest!r}: comma-separated extension numbers expected",
        )
    elif kind == "announcement":
        _need(bool(_SOUND.match(arg)), where, f"{dest!r}: sound file name expected")
    else:
        raise ConfigError(
            where, f"{dest!r}: expected line:, extension:, group:, announcement: or hangup"
        )


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOST.match(host)) and ".." not in host
    return True


def check_config(pbx: PbxConfig, cfg: Config) -> None:  # noqa: PLR0912
    """The whole set against itself and the TOML config; raises ConfigError with the reason."""
    for t in pbx.trunks:
        t.check()
    for e in pbx.extensions:
        e.check()
    for r in pbx.routes:
        r.check()
    for o in pbx.outbound:
        o.check()
    pbx.settings.check()
    _unique([t.name for t in pbx.trunks], "trunk", "name")
    _unique([e.number for e in pbx.extensions], "extension", "number")
    _unique([r.did for r in pbx.routes], "route", "did")
    _unique([o.name for o in pbx.outbound], "outbound", "name")
    _unique([d for t in pbx.trunks for d in t.dids], "trunk", "did (each DID belongs to one trunk)")
    _unique([e.mac for e in pbx.extensions if e.mac], "extension", "mac")
    lines = {ln.name: ln.extension for ln in cfg.lines}
    toml_ext = {e.number for e in cfg.extensions}
    taken = {v: f"line {k!r}" for k, v in lines.items()} | {
        n: f"config-file extension {n}" for n in toml_ext
    }
    taken[cfg.agent.username] = "the agent endpoint"
    for ext in pbx.extensions:
        if ext.number in taken:
            raise ConfigError(
                f"extension {ext.number!r}.number",
                f"already used by {taken[ext.number]} in {cfg.source or 'the config file'}",
            )
        for ln in ext.takeover_lines:
            _need(ln in lines, f"extension {ext.number!r}.takeover_lines", f"no line {ln!r}")
    known_ext = toml_ext | {e.number for e in pbx.extensions if e.enabled}
    trunk_names = {t.name for t in pbx.trunks}
    for r in pbx.routes:
        dests = [(r.destination, "destination"), (r.closed_destination, "closed_destination")]
        dests += [(o.destination, f"overrides[{i}].destination") for i, o in enumerate(r.overrides)]
        for dest, what in dests:
            _check_target(dest, f"route {r.did!r}.{what}", lines, known_ext)
    for o in pbx.outbound:
        _need(
            o.trunk in trunk_names,
            f"outbound {o.name!r}.trunk",
            f"no trunk {o.trunk!r} (trunks: {', '.join(sorted(trunk_names)) or 'none'})",
        )
        for m in o.members:
            if m.startswith("line:"):
                _need(m[5:] in lines, f"outbound {o.name!r}.members", f"no line {m[5:]!r}")
            else:
                _need(m in known_ext, f"outbound {o.name!r}.members", f"no enabled extension {m}")
        for p in o.patterns:
            bare = p.lstrip("_")
            _need(
                bare not in taken and bare not in known_ext,
                f"outbound {o.name!r}.patterns",
                f"{p!r} would shadow an internal number",
            )
    if pbx.outbound or any(t.enabled for t in pbx.trunks):
        for num in pbx.settings.emergency:
            _need(
                num not in taken and num not in known_ext,
                "settings.emergency",
                f"{num} is also an internal number",
            )


def _check_target(dest: str, where: str, lines: dict[str, str], exts: set[str]) -> None:
    if not dest:
        return
    kind, _, arg = dest.partition(":")
    if kind == "line":
        _need(arg in lines, where, f"no line {arg!r} (lines: {', '.join(sorted(lines))})")
    elif kind == "extension":
        _need(arg in exts, where, f"no enabled extension {arg}")
    elif kind == "group":
        for m in arg.split(","):
            _need(m in exts, where, f"group member {m} is not an enabled extension")


def _unique(values: list[str], kind: str, what: str) -> None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise ConfigError(f"{kind} {v!r}", f"{what} {v!r} is used twice")
        seen.add(v)


# ---- (de)serialisation for the store: plain JSON-able dicts, secrets excluded
T = TypeVar("T", Trunk, Extension, InboundRoute, OutboundRule, Settings)
SECRET_FIELDS = {"trunk": "password", "extension": "password"}


def to_dict(obj: Trunk | Extension | InboundRoute | OutboundRule | Settings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, tuple):
            v = [
                {"prefix": x.prefix, "destination": x.destination} if isinstance(x, Override) else x
                for x in v
            ]
        out[f.name] = v
    return out


def from_dict(cls: type[T], data: dict[str, Any], where: str) -> T:  # noqa: PLR0912
    """Build from API/JSON input; unknown or mistyped fields are a ConfigError naming them."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(
            where, f"unknown field(s) {', '.join(unknown)} (known: {', '.join(known)})"
        )
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        kind = str(known[name].type)
        if name == "overrides":
            if not isinstance(value, list) or not all(
                isinstance(o, dict) and set(o) == {"prefix", "destination"} for o in value
            ):
                raise ConfigError(f"{where}.overrides", "a list of {prefix, destination}")
            value = tuple(Override(str(o["prefix"]), str(o["destination"])) for o in value)  # noqa: PLW2901
        elif kind.startswith("tuple"):
            if isinstance(value, str):
                value = [v.strip() for v in value.replace("\n", ",").split(",") if v.strip()]  # noqa: PLW2901
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}.{name}", "a list of strings")
            value = tuple(value)  # noqa: PLW2901
        elif kind == "bool":
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.{name}", "true or false")
        elif kind == "int":
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value)  # noqa: PLW2901
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"{where}.{name}", "a whole number")
        elif not isinstance(value, str):
            raise ConfigError(f"{where}.{name}", "a string")
        kwargs[name] = value
    missing = sorted(_required(cls) - set(kwargs))
    if missing:
        raise ConfigError(where, f"missing field(s) {', '.join(missing)}")
    return cls(**kwargs)


def _required(cls: type[Any]) -> set[str]:
    from dataclasses import MISSING

    return {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
