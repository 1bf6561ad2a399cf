"""Renders Asterisk's configs from the appliance's TOML config.

Asterisk's files are an output, never edited on the box: render() produces every file in memory,
validates it, and only then write() replaces the live directory (atomically per file), so a
broken config never reaches Asterisk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import jinja2

from appliance.config import Config, LineConfig
from appliance.errors import ConfigError

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "asterisk" / "templates"
MARKER = ".rendered-by-callvault"

# Autoload is off: only what the appliance uses is loaded (fewer modules, less attack surface,
# AMI up in ~0.3 s). Order matters for dependencies.
MODULES: tuple[str, ...] = (
    "res_timing_timerfd.so",
    "res_sorcery_config.so",
    "res_sorcery_memory.so",
    "res_sorcery_astdb.so",
    "res_pjproject.so",
    "res_pjsip.so",
    "res_pjsip_session.so",
    "res_pjsip_pubsub.so",
    "res_pjsip_authenticator_digest.so",
    "res_pjsip_outbound_authenticator_digest.so",
    "res_pjsip_endpoint_identifier_ip.so",
    "res_pjsip_endpoint_identifier_user.so",
    "res_pjsip_registrar.so",
    "res_pjsip_sdp_rtp.so",
    "res_pjsip_caller_id.so",
    "res_pjsip_header_funcs.so",
    "res_pjsip_refer.so",
    "res_pjsip_dtmf_info.so",
    "res_pjsip_rfc3326.so",
    "res_pjsip_nat.so",
    "res_rtp_asterisk.so",
    "chan_pjsip.so",
    "codec_ulaw.so",
    "codec_alaw.so",
    "codec_a_mu.so",
    "codec_gsm.so",
    "format_wav.so",
    "format_gsm.so",
    "format_pcm.so",
    "bridge_simple.so",
    "bridge_native_rtp.so",
    "bridge_builtin_features.so",
    "pbx_config.so",
    "app_dial.so",
    "app_echo.so",
    "app_playback.so",
    "app_mixmonitor.so",
    "app_stack.so",
    "app_blind_transfer.so",
    "func_cdr.so",
    "func_channel.so",
    "func_callerid.so",
    "func_hangupcause.so",
    "func_logic.so",
    "func_strings.so",
    "func_timeout.so",
    "cdr_manager.so",
    "res_cdrel_custom.so",
    "cdr_custom.so",
    # PBX configuration (appliance.pbx): trunk registrations, SIP ACLs, time-condition state in
    # AstDB, voicemail, per-trunk channel limits.
    "res_pjsip_outbound_registration.so",
    "res_pjsip_acl.so",
    "func_db.so",
    "func_groupcount.so",
    "app_voicemail.so",
    "app_directed_pickup.so",
)

# Extra CDR variables set by the dialplan, exposed in AMI Cdr events and the CSV file.
CDR_EXTRA: tuple[tuple[str, str], ...] = (
    ("linkedid", "LinkedID"),
    ("sequence", "Sequence"),
    ("cv_cause", "HangupCause"),
    ("cv_line", "Line"),
    ("cv_direction", "Direction"),
    ("cv_dialed", "Dialed"),
)

# Column order of Asterisk's own CDR file; appliance.telephony.cdr parses it back.
CDR_CSV_FIELDS: tuple[str, ...] = (
    "uniqueid",
    "linkedid",
    "sequence",
    "clid",
    "src",
    "dst",
    "dcontext",
    "channel",
    "dstchannel",
    "lastapp",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "cv_cause",
    "cv_line",
    "cv_direction",
    "cv_dialed",
)
# Epoch seconds with microseconds for times: unambiguous whatever the box's time zone.
_EPOCH_FIELDS = {"start", "answer", "end"}


@dataclass(frozen=True)
class RenderedLine:
    name: str
    extension: str
    kind: str
    record_legs: tuple[str, ...]
    announcement: str
    max_duration_s: int
    mixmonitor: str


def recording_basename(line: str, leg: str) -> str:
    """File name MixMonitor writes for a leg; the appliance finds recordings by this pattern."""
    return f"cv-${{CHANNEL(linkedid)}}-{line}-{leg}.wav"


def mixmonitor_args(spool_dir: str, line: LineConfig) -> str:
    """MixMonitor arguments recording the legs a line asks for.

    On the caller's channel, `r()` is what the caller says and `t()` what is played to them.
    """
    if not line.record_legs:
        return ""
    spool = spool_dir.rstrip("/")
    main = (
        f"{spool}/{recording_basename(line.name, 'mixed')}" if "mixed" in line.record_legs else ""
    )
    opts = ""
    if "caller" in line.record_legs:
        opts += f"r({spool}/{recording_basename(line.name, 'caller')})"
    if "callee" in line.record_legs:
        opts += f"t({spool}/{recording_basename(line.name, 'callee')})"
    return f"{main},{opts}" if opts else main


def cdr_csv_format() -> str:
    cols = []
    for name in CDR_CSV_FIELDS:
        ref = f"CDR({name},u)" if name in _EPOCH_FIELDS else f"CDR({name})"
        cols.append(f"${{CSV_QUOTE(${{{ref}}})}}")
    return ",".join(cols)


def render(cfg: Config, templates_dir: Path = TEMPLATES_DIR) -> dict[str, str]:
    """All Asterisk config files as {name: text}; raises ConfigError naming what is wrong."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 -- Asterisk config, not HTML
    )
    a = cfg.asterisk
    for i, ext in enumerate(cfg.extensions):
        if any(c in ext.name for c in '"<>\n;'):
            raise ConfigError(
                f"extensions[{i}].name", "must not contain quotes, <, >, ; or newlines"
            )
    lines = [
        RenderedLine(
            name=ln.name,
            extension=ln.extension,
            kind=ln.kind,
            record_legs=ln.record_legs,
            announcement=ln.announcement,
            max_duration_s=ln.max_duration_s,
            mixmonitor=mixmonitor_args(a.spool_dir, ln) if ln.record_from_start else "",
        )
        for ln in cfg.lines
    ]
    context = {
        "source": str(cfg.source or "defaults"),
        "a": a,
        "agent": cfg.agent,
        "agent_password": cfg.agent_password(),
        "ami_secret": cfg.ami_secret(),
        "extensions": cfg.extensions,
        "ext_passwords": {e.number: cfg.extension_password(e) for e in cfg.extensions},
        "ip_peers": cfg.ip_peers,
        "lines": lines,
        "modules": MODULES,
        "cdr_extra": CDR_EXTRA,
        "cdr_log_name": Path(a.cdr_log).name,
        "cdr_csv_format": cdr_csv_format(),
    }
    files = {}
    for template in sorted(templates_dir.glob("*.conf.j2")):
        name = template.name.removesuffix(".j2")
        files[name] = env.get_template(template.name).render(**context)
    _validate(files)
    return files


def _validate(files: dict[str, str]) -> None:
    # Asterisk silently ignores malformed lines; catch the ones a template bug would produce.
    for name, text in files.items():
        for n, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            if "{{" in stripped or "{%" in stripped:
                raise ConfigError(f"asterisk/{name}:{n}", "unrendered template syntax")
            if stripped.startswith("[") and not stripped.split(";")[0].rstrip().endswith(
                ("]", ")")
            ):
                raise ConfigError(f"asterisk/{name}:{n}", f"malformed section header {stripped!r}")


def write(cfg: Config, files: dict[str, str]) -> Path:
    """Replace the live config directory's files; returns the directory (host path)."""
    target = cfg.asterisk.host_path(cfg.asterisk.config_dir)
    target.mkdir(parents=True, exist_ok=True)
    gid = _asterisk_gid(cfg.asterisk.root)
    for name, text in files.items():
        tmp = target / f".{name}.tmp"
        # Secrets are inside (AMI secret, SIP passwords): readable by root and Asterisk only.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        if gid is not None:
            os.chown(tmp, 0, gid)
        tmp.replace(target / name)
    (target / MARKER).write_text(str(cfg.source or "defaults") + "\n")
    return target


def _asterisk_gid(root: Path) -> int | None:
    """Group id of `asterisk` as the box (or the sandbox rootfs) defines it; None if absent."""
    try:
        for row in (root / "etc" / "group").read_text().splitlines():
            parts = row.split(":")
            if parts[0] == "asterisk":
                return int(parts[2])
    except (OSError, ValueError, IndexError):
        return None
    return None
