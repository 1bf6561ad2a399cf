from __future__ import annotations

from dataclasses import replace

import pytest

from appliance.config import Config
from appliance.errors import ConfigError
from appliance.pbx.render import (
    DIALPLAN_FILE,
    PJSIP_FILE,
    VOICEMAIL_FILE,
    render_pbx,
    validate_files,
)
from appliance.telephony import render as telephony_render
from tests.pbx.conftest import sample


def test_toml_render_includes_the_pbx_files(cfg: Config) -> None:
    files = telephony_render.render(cfg)
    assert "#tryinclude pjsip_pbx.conf" in files["pjsip.conf"]
    assert "#tryinclude extensions_pbx.conf" in files["extensions.conf"]
    assert "security" in files["manager.conf"]
    for module in ("res_pjsip_acl.so", "func_db.so", "res_pjsip_outbound_registration.so"):
        assert f"load = {module}" in files["modules.conf"]


def test_trunks_extensions_acl(cfg: Config) -> None:
    pbx = sample("p" * 24)
    files = render_pbx(pbx, cfg, blocked=("203.0.113.9",))
    pj = files[PJSIP_FILE]
    # IP trunk: identified by address; registration trunk: registers with its credentials.
    assert (
        "[trunk-carrier-identify]\ntype = identify\nendpoint = trunk-carrier\nmatch = 192.0.2.10"
        in pj
    )
    assert "[trunk-backup-reg]\ntype = registration" in pj
    assert "server_uri = sip:sip.example.net:5060;transport=tcp" in pj
    assert "password = trunk-secret-1" in pj and "[transport-tcp]" in pj
    # Only the LAN and the trunks' IPs reach SIP; the blocked address never does.
    acl = pj.split("[cvpbx-acl]")[1].split("\n\n")[0]
    assert "deny = 0.0.0.0/0.0.0.0" in acl and "permit = 192.168.0.0/16" in acl
    assert "permit = 192.0.2.10" in acl
    assert "[cvpbx-blocked]\ntype = acl\ndeny = 203.0.113.9" in pj
    assert 'callerid = "Sales" <301>' in pj and "mailboxes = 301@callvault" in pj
    assert "password = " + "p" * 24 in pj
    assert "301 => " in files[VOICEMAIL_FILE]


def test_dialplan_routes_rules_emergency(cfg: Config) -> None:
    dp = render_pbx(sample(), cfg)[DIALPLAN_FILE]
    assert "[callvault-extensions](+)\ninclude => cvpbx-extensions" in dp
    route = dp.split("[cvpbx-route-4631100200]")[1]
    assert '${DB(cvpbx/open/4631100200)}" = "1"]?open:closed' in route
    assert "n(open),Goto(callvault-extensions,301,1)" in route
    assert "n(closed),Goto(callvault-lines,100,1)" in route
    ctx = dp.split("[cvpbx-ext-301]")[1].split("\n\n")[0]
    assert "include => cvpbx-out-national" in ctx and "include => cvpbx-emergency" in ctx
    assert "exten => *8100,1,Pickup(100@callvault-lines)" in dp
    rule = dp.split("[cvpbx-out-national]")[1].split("\n\n")[0]
    assert "exten => _0X.,1" in rule and ":4631100250)" in rule
    assert "Gosub(cvpbx-trunk-out,s,1(trunk-carrier,${EXTEN},0))" in rule
    for num in ("112", "911"):
        assert f"exten => {num},1" in dp.split("[cvpbx-emergency]")[1]
    # Unrouted numbers from a trunk reach the config file's lines as before.
    assert "include => callvault-inbound" in dp.split("[cvpbx-inbound]")[1]


def test_disabled_extension_is_not_rendered(cfg: Config) -> None:
    pbx = sample()
    pbx = replace(
        pbx, extensions=(replace(pbx.extensions[0], enabled=False),), routes=(), outbound=()
    )
    files = render_pbx(pbx, cfg)
    assert "[301]" not in files[PJSIP_FILE]
    assert "exten => 301," not in files[DIALPLAN_FILE]


def test_overrides_render_before_the_time_check(cfg: Config) -> None:
    from appliance.pbx.model import Override

    pbx = sample()
    route = replace(pbx.routes[0], overrides=(Override("+4670", "line:echo"),))
    dp = render_pbx(replace(pbx, routes=(route,)), cfg)[DIALPLAN_FILE]
    body = dp.split("[cvpbx-route-4631100200]")[1]
    assert body.index('CALLERID(num):0:5}" = "+4670"]?override0') < body.index("DB(cvpbx")
    assert "n(override0),Goto(callvault-lines,900,1)" in body


def test_validation_catches_broken_text_and_missing_tls_cert(cfg: Config) -> None:
    with pytest.raises(ConfigError, match="malformed section header"):
        validate_files({DIALPLAN_FILE: "[ctx\nexten => 1,1,Hangup()\n"}, cfg)
    with pytest.raises(ConfigError, match="unbalanced brackets"):
        validate_files({DIALPLAN_FILE: "[ctx]\nexten => 1,1,Dial(PJSIP/1\n"}, cfg)
    with pytest.raises(ConfigError, match="outside any section"):
        validate_files({PJSIP_FILE: "type = endpoint\n"}, cfg)
    pbx = sample()
    tls = replace(pbx, trunks=(replace(pbx.trunks[0], transport="tls"),))
    with pytest.raises(ConfigError, match="TLS needs a certificate"):
        render_pbx(tls, cfg)
