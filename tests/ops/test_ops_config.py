"""`[ops]` in the config: documented defaults, and errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance import config
from appliance.errors import ConfigError
from appliance.ops.notify import SmtpNotifier, WebhookNotifier, notifiers_from_config


def parse(tmp_path: Path, **ops: object) -> config.Config:
    return config.parse({"ops": ops}, base_dir=tmp_path)


def test_defaults_send_nothing(tmp_path: Path) -> None:
    cfg = parse(tmp_path)
    assert cfg.ops.deadline_warn_days == 5
    assert cfg.ops.disk_min_free_pct < cfg.ops.disk_warn_free_pct
    assert notifiers_from_config(cfg.ops) == []


def test_smtp_and_lan_webhook(tmp_path: Path) -> None:
    cfg = parse(
        tmp_path, smtp_host="relay.lan", smtp_port=2525, smtp_from="box@corp.lan",
        smtp_to=["it@corp.lan"], webhook_url="http://10.1.2.3:9000/alerts", log_level="debug",
    )  # fmt: skip
    smtp, hook = notifiers_from_config(cfg.ops)
    assert isinstance(smtp, SmtpNotifier) and smtp.port == 2525 and smtp.to == ("it@corp.lan",)
    assert isinstance(hook, WebhookNotifier)
    assert cfg.ops.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("ops", "field", "says"),
    [
        ({"smtp_host": "relay.lan", "smtp_to": ["a@b.lan"]}, "ops.smtp_from", "required"),
        ({"smtp_host": "relay.lan", "smtp_from": "a@b.lan"}, "ops.smtp_to", "required"),
        ({"smtp_to": ["not-an-address"]}, "ops.smtp_to", "not an e-mail"),
        ({"webhook_url": "https://hooks.example.com/x"}, "ops.webhook_url", "not a name"),
        ({"webhook_url": "http://8.8.8.8/x"}, "ops.webhook_url", "not a LAN address"),
        ({"webhook_url": "ftp://10.0.0.1/x"}, "ops.webhook_url", "http(s) URL"),
        ({"disk_min_free_pct": 20, "disk_warn_free_pct": 10}, "ops.disk_warn_free_pct", "above"),
        ({"log_level": "loud"}, "ops.log_level", "one of"),
        ({"log_format": "xml"}, "ops.log_format", "'json' or 'text'"),
        ({"deadline_warn_days": 365}, "ops.deadline_warn_days", "between"),
        ({"smtp_hots": "x"}, "ops.smtp_hots", "unknown key"),
    ],
)
def test_errors_name_the_field(
    tmp_path: Path, ops: dict[str, object], field: str, says: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        parse(tmp_path, **ops)
    assert field in str(exc.value) and says in str(exc.value)
