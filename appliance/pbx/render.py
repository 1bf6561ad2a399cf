"""Renders the store's PBX objects into Asterisk config files next to today's TOML render.

The TOML render (appliance.telephony.render) owns pjsip.conf and extensions.conf; they
`#tryinclude` the two files made here, so the config-file lines, extensions and peers keep
working unchanged and the store only adds: trunks, desk-phone extensions, SIP ACLs, inbound
routes with time conditions, outbound rules. voicemail.conf is wholly ours.

Time conditions are evaluated by the appliance (appliance.pbx.apply.TimeKeeper, with a clock
tests control) and handed to the dialplan as AstDB keys `cvpbx/open/<did>`: AstDB survives
dialplan reloads and Asterisk restarts, and the dialplan falls back to the closed destination
(the AI line, typically) when the key is missing.
"""

from __future__ import annotations

import hashlib
import ipaddress
from pathlib import Path

from appliance.config import Config
from appliance.errors import ConfigError
from appliance.pbx.model import Extension, InboundRoute, PbxConfig, Trunk

PJSIP_FILE = "pjsip_pbx.conf"
DIALPLAN_FILE = "extensions_pbx.conf"
VOICEMAIL_FILE = "voicemail.conf"
FILES = (PJSIP_FILE, DIALPLAN_FILE, VOICEMAIL_FILE)
# Which Asterisk module reads each file: only the modules whose files changed are reloaded.
MODULE_OF = {
    PJSIP_FILE: "res_pjsip.so",
    DIALPLAN_FILE: "pbx_config.so",
    VOICEMAIL_FILE: "app_voicemail.so",
}
# A failed reload of these refuses the change (calls depend on them); voicemail's is a warning.
ESSENTIAL_MODULES = frozenset({"res_pjsip.so", "pbx_config.so"})
TLS_CERT = "/etc/asterisk/keys/callvault-sip.pem"
OPEN_KEY = "cvpbx/open"


def trunk_endpoint(name: str) -> str:
    return f"trunk-{name}"


def render_pbx(pbx: PbxConfig, cfg: Config, blocked: tuple[str, ...] = ()) -> dict[str, str]:
    """{file name: text}; raises ConfigError naming what is wrong (nothing is written here)."""
    files = {
        PJSIP_FILE: _pjsip(pbx, cfg, blocked),
        DIALPLAN_FILE: _dialplan(pbx, cfg),
        VOICEMAIL_FILE: _voicemail(pbx),
    }
    validate_files(files, cfg)
    return files


def files_sha(files: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return h.hexdigest()


# ---- pjsip
def _pjsip(pbx: PbxConfig, cfg: Config, blocked: tuple[str, ...]) -> str:  # noqa: PLR0912
    a = cfg.asterisk
    out = ["; Rendered by callvault (appliance.pbx) from the store -- never edited on the box."]
    transports = {t.transport for t in pbx.trunks if t.enabled}
    if "tcp" in transports:
        out += [
            "",
            "[transport-tcp]",
            "type = transport",
            "protocol = tcp",
            f"bind = {a.sip_bind}:{a.sip_port}",
        ]
    if "tls" in transports:
        out += [
            "",
            "[transport-tls]",
            "type = transport",
            "protocol = tls",
            f"bind = {a.sip_bind}:{a.sip_port + 1}",
            f"cert_file = {TLS_CERT}",
            f"priv_key_file = {TLS_CERT}",
            "method = tlsv1_2",
        ]
    # Only the LAN, the trunks' hosts and the config file's IP peers reach SIP; blocked
    # addresses never do. Until the store holds a trunk or a phone the box is as the config
    # file made it (no ACL), so an appliance that does not use the PBX pages is unchanged.
    if pbx.trunks or pbx.extensions:
        out += ["", "[cvpbx-acl]", "type = acl", "deny = 0.0.0.0/0.0.0.0", "deny = ::/0"]
        for net in pbx.settings.lan:
            out.append(f"permit = {ipaddress.ip_network(net, strict=False)}")
        for t in pbx.trunks:
            if t.enabled and _is_ip(t.host):
                out.append(f"permit = {t.host}")
        for peer in cfg.ip_peers:
            if _is_ip(peer.match.split("/")[0]):
                out.append(f"permit = {peer.match}")
    if blocked:
        out += ["", "[cvpbx-blocked]", "type = acl"]
        out += [f"deny = {addr}" for addr in blocked]
    for t in pbx.trunks:
        if t.enabled:
            out += _trunk(t)
    for e in pbx.extensions:
        if e.enabled:
            out += _extension(e)
    return "\n".join(out) + "\n"


def _trunk(t: Trunk) -> list[str]:
    ep = trunk_endpoint(t.name)
    transport = {"udp": "transport-udp", "tcp": "transport-tcp", "tls": "transport-tls"}[
        t.transport
    ]
    uri = f"sip:{t.host}:{t.port}" + ("" if t.transport == "udp" else f";transport={t.transport}")
    out = [
        "",
        f"; ---- trunk {t.name} ({t.auth})",
        f"[{ep}]",
        "type = endpoint",
        f"context = cvpbx-from-{ep}",
        "disallow = all",
        f"allow = {','.join(t.codecs)}",
        f"aors = {ep}",
        f"transport = {transport}",
        "direct_media = no",
        "rtp_symmetric = yes",
        "force_rport = yes",
        "send_pai = yes",
        "send_rpid = yes",
        "trust_id_outbound = yes",
        "dtmf_mode = rfc4733",
    ]
    if t.auth == "registration":
        out += [
            f"outbound_auth = {ep}-auth",
            f"from_user = {t.username}",
            f"from_domain = {t.host}",
        ]
    out += ["", f"[{ep}]", "type = aor", f"contact = {uri}", "qualify_frequency = 60"]
    if t.auth == "registration":
        out += [
            "",
            f"[{ep}-auth]",
            "type = auth",
            "auth_type = userpass",
            f"username = {t.username}",
            f"password = {t.password}",
        ]
        out += [
            "",
            f"[{ep}-reg]",
            "type = registration",
            f"transport = {transport}",
            f"outbound_auth = {ep}-auth",
            f"server_uri = {uri}",
            f"client_uri = sip:{t.username}@{t.host}:{t.port}",
            "retry_interval = 60",
            "forbidden_retry_interval = 600",
            "expiration = 3600",
            f"endpoint = {ep}",
            "line = yes",
        ]
    out += ["", f"[{ep}-identify]", "type = identify", f"endpoint = {ep}", f"match = {t.host}"]
    return out


def _extension(e: Extension) -> list[str]:
    out = [
        "",
        f"; ---- desk phone {e.number} ({e.name})",
        f"[{e.number}]",
        "type = endpoint",
        f"context = cvpbx-ext-{e.number}",
        "disallow = all",
        "allow = ulaw,alaw",
        f"auth = {e.number}-auth",
        f"aors = {e.number}",
        f'callerid = "{e.name}" <{e.number}>',
        "direct_media = no",
        "rtp_symmetric = yes",
        "force_rport = yes",
        "rewrite_contact = yes",
        "dtmf_mode = rfc4733",
    ]
    if e.caller_id:
        out.append(f"set_var = CV_EXT_CID={e.caller_id}")
    if e.voicemail:
        out.append(f"mailboxes = {e.number}@callvault")
    out += [
        "",
        f"[{e.number}-auth]",
        "type = auth",
        "auth_type = userpass",
        f"username = {e.number}",
        f"password = {e.password}",
        "",
        f"[{e.number}]",
        "type = aor",
        "max_contacts = 1",
        "remove_existing = yes",
    ]
    return out


# ---- dialplan
def _dialplan(pbx: PbxConfig, cfg: Config) -> str:  # noqa: PLR0912, PLR0915
    lines = {ln.name: ln.extension for ln in cfg.lines}
    trunks = {t.name: t for t in pbx.trunks if t.enabled}
    out = ["; Rendered by callvault (appliance.pbx) from the store -- never edited on the box.", ""]
    # Desk phones of the config file and the agent's transfers reach the store's extensions.
    out += ["[callvault-extensions](+)", "include => cvpbx-extensions", "", "[cvpbx-extensions]"]
    for e in pbx.extensions:
        if not e.enabled:
            continue
        out += [
            f"exten => {e.number},1,NoOp(callvault pbx extension {e.number})",
            ' same => n,Set(CDR(cv_direction)=${IF($["${CV_DIRECTION}" = ""]?internal:${CV_DIRECTION})})',  # noqa: E501
            " same => n,Set(CDR(cv_dialed)=${EXTEN})",
            " same => n,Set(CHANNEL(hangup_handler_push)=callvault-hangup,s,1)",
            f" same => n,Dial(PJSIP/{e.number},25)",
        ]
        if e.voicemail:
            out.append(' same => n,GotoIf($["${DIALSTATUS}" = "ANSWER"]?done)')
            out.append(f" same => n,VoiceMail({e.number}@callvault,u)")
        out.append(" same => n(done),Hangup()")
    # What each desk phone may dial: internal numbers, its take-over codes, emergency
    # numbers, and the outbound rules it is a member of.
    for e in pbx.extensions:
        if not e.enabled:
            continue
        out += ["", f"[cvpbx-ext-{e.number}]", "include => callvault-internal"]
        if e.takeover_lines:
            out.append(f"include => cvpbx-takeover-{e.number}")
        if trunks:
            out.append("include => cvpbx-emergency")
        for rule in pbx.outbound:
            if not rule.members or e.number in rule.members:
                out.append(f"include => cvpbx-out-{rule.name}")
        if e.takeover_lines:
            out += ["", f"[cvpbx-takeover-{e.number}]"]
            for ln in e.takeover_lines:
                out.append(f"exten => *8{lines[ln]},1,Pickup({lines[ln]}@callvault-lines)")
                out.append(" same => n,Hangup()")
    for line_name in sorted(
        {m[5:] for r in pbx.outbound for m in r.members if m.startswith("line:")}
    ):
        out += ["", f"[cvpbx-line-{line_name}]", "include => cvpbx-emergency"]
        for rule in pbx.outbound:
            if f"line:{line_name}" in rule.members:
                out.append(f"include => cvpbx-out-{rule.name}")
    for rule in pbx.outbound:
        out += ["", f"[cvpbx-out-{rule.name}]"]
        if rule.trunk not in trunks:
            continue  # a disabled trunk: the rule dials nothing
        t = trunks[rule.trunk]
        cid = rule.caller_id or t.caller_id
        number = (
            f"{rule.prepend}${{EXTEN:{rule.strip}}}" if rule.strip else f"{rule.prepend}${{EXTEN}}"
        )
        for pattern in rule.patterns:
            out += [
                f"exten => {pattern},1,NoOp(callvault outbound rule {rule.name})",
                " same => n,Set(CDR(cv_direction)=outbound)",
                " same => n,Set(CDR(cv_dialed)=${EXTEN})",
                f' same => n,Set(CALLERID(num)=${{IF($["${{CV_EXT_CID}}" != ""]?${{CV_EXT_CID}}:{cid or "${CALLERID(num)}"})}})',  # noqa: E501
                f" same => n,Gosub(cvpbx-trunk-out,s,1({trunk_endpoint(t.name)},{number},{t.max_channels}))",  # noqa: E501
                " same => n,Hangup()",
            ]
    if trunks:
        out += [
            "",
            "; Emergency numbers always reach a trunk (each in turn), whatever the rules.",
            "[cvpbx-emergency]",
        ]
        for num in pbx.settings.emergency:
            out.append(f"exten => {num},1,NoOp(callvault emergency call)")
            out.append(" same => n,Set(CDR(cv_direction)=outbound)")
            for t in trunks.values():
                cid = t.caller_id
                if cid:
                    out.append(
                        f' same => n,Set(CALLERID(num)=${{IF($["${{CV_EXT_CID}}" != ""]?${{CV_EXT_CID}}:{cid})}})'  # noqa: E501
                    )
                out.append(f" same => n,Dial(PJSIP/${{EXTEN}}@{trunk_endpoint(t.name)},60)")
            out.append(" same => n,Hangup()")
    # A trunk's channel limit counts both directions (GROUP per trunk).
    out += [
        "",
        "[cvpbx-trunk-out]",
        "exten => s,1,Set(GROUP(cvpbx-trunk)=${ARG1})",
        " same => n,GotoIf($[${ARG3} > 0 & ${GROUP_COUNT(${ARG1}@cvpbx-trunk)} > ${ARG3}]?busy)",
        " same => n,Dial(PJSIP/${ARG2}@${ARG1},60)",
        " same => n,Return()",
        " same => n(busy),Playback(all-circuits-busy-now)",
        " same => n,Hangup(34)",
    ]
    for t in trunks.values():
        ep = trunk_endpoint(t.name)
        out += ["", f"[cvpbx-from-{ep}]"]
        for pattern in ("_X.", "_+X."):
            out += [
                f"exten => {pattern},1,Set(GROUP(cvpbx-trunk)={ep})",
                f" same => n,GotoIf($[{t.max_channels} > 0 & ${{GROUP_COUNT({ep}@cvpbx-trunk)}} > {t.max_channels}]?busy)",  # noqa: E501
                " same => n,Goto(cvpbx-inbound,${EXTEN},1)",
                " same => n(busy),Hangup(34)",
            ]
    out += [
        "",
        "; Routed DIDs first; other numbers reach the config file's lines as before.",
        "[cvpbx-inbound]",
    ]
    for r in pbx.routes:
        out.append(f"exten => {r.did},1,Goto(cvpbx-route-{_ctx(r.did)},s,1)")
    out.append("include => callvault-inbound")
    for r in pbx.routes:
        out += _route(r, lines)
    return "\n".join(out) + "\n"


def _ctx(did: str) -> str:
    return did.replace("+", "p")


def _route(r: InboundRoute, lines: dict[str, str]) -> list[str]:
    out = [
        "",
        f"; ---- route {r.did}{' (' + r.name + ')' if r.name else ''}",
        f"[cvpbx-route-{_ctx(r.did)}]",
        f"exten => s,1,NoOp(callvault route {r.did})",
        f" same => n,Set(__CV_DID={r.did})",
    ]
    for i, o in enumerate(r.overrides):
        out.append(
            f' same => n,GotoIf($["${{CALLERID(num):0:{len(o.prefix)}}}" = "{o.prefix}"]?override{i})'  # noqa: E501
        )
    timed = bool(r.hours or r.holidays)
    if timed:
        # Missing key (the appliance never ran since Asterisk's astdb was made) = closed.
        out.append(f' same => n,GotoIf($["${{DB({OPEN_KEY}/{_ctx(r.did)})}}" = "1"]?open:closed)')
    out += _dest(r.destination, "open", lines)
    if timed:
        out += _dest(r.closed_destination, "closed", lines)
    for i, o in enumerate(r.overrides):
        out += _dest(o.destination, f"override{i}", lines)
    return out


def _dest(dest: str, label: str, lines: dict[str, str]) -> list[str]:
    kind, _, arg = dest.partition(":")
    if kind == "line":
        return [f" same => n({label}),Goto(callvault-lines,{lines[arg]},1)"]
    if kind == "extension":
        return [f" same => n({label}),Goto(callvault-extensions,{arg},1)"]
    if kind == "group":
        targets = "&".join(f"PJSIP/{m}" for m in arg.split(","))
        return [f" same => n({label}),Dial({targets},25)", " same => n,Hangup()"]
    if kind == "announcement":
        return [
            f" same => n({label}),Answer()",
            f" same => n,Playback({arg})",
            " same => n,Wait(1)",
            " same => n,Hangup()",
        ]
    return [f" same => n({label}),Hangup(21)"]


def _voicemail(pbx: PbxConfig) -> str:
    out = [
        "; Rendered by callvault (appliance.pbx) -- mailboxes of the store's extensions.",
        "[general]",
        "format = wav",
        "attach = no",
        "maxmsg = 100",
        "",
        "[callvault]",
    ]
    for e in pbx.extensions:
        if e.enabled and e.voicemail:
            # The mailbox PIN is derived from the SIP secret: stable across renders (no
            # needless reload) and never guessable from the number.
            pin = str(int(hashlib.sha256(b"cv-vm|" + e.password.encode()).hexdigest(), 16))[:8]
            out.append(f"{e.number} => {pin},{e.name}")
    return "\n".join(out) + "\n"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def validate_files(files: dict[str, str], cfg: Config) -> None:
    """Strict checks on the rendered text itself: what Asterisk would silently skip or choke on.

    The model already refused bad values; this catches a render bug or an environment problem
    (a TLS trunk without a certificate) before the files reach Asterisk.
    """
    for name, text in files.items():
        sections: set[str] = set()
        current = ""
        for n, line in enumerate(text.splitlines(), 1):
            s = line.strip()
            where = f"asterisk/{name}:{n}"
            if not s or s.startswith(";"):
                continue
            if any(c in s for c in "\r\0"):
                raise ConfigError(where, "control character in config line")
            if s.startswith("["):
                head = s.split(";")[0].rstrip()
                if not (head.endswith("]") or head.endswith("](+)")):
                    raise ConfigError(where, f"malformed section header {s!r}")
                current = head
                if name == DIALPLAN_FILE and head in sections and not head.endswith("(+)"):
                    raise ConfigError(where, f"section {head} rendered twice")
                sections.add(head)
                continue
            if "=" not in s:
                raise ConfigError(where, f"not a key = value line: {s!r}")
            if not current:
                raise ConfigError(where, "setting outside any section")
            balanced = s.count("(") == s.count(")") and s.count("{") == s.count("}")
            if name == DIALPLAN_FILE and s.startswith(("exten", "same")) and not balanced:
                raise ConfigError(where, f"unbalanced brackets in {s!r}")
    if "protocol = tls" in files.get(PJSIP_FILE, ""):
        cert = cfg.asterisk.host_path(TLS_CERT)
        if not Path(cert).is_file():
            raise ConfigError(
                "trunk.transport",
                f"TLS needs a certificate and key at {TLS_CERT} (not found at {cert})",
            )
