from pathlib import Path

import pytest

from appliance import config
from appliance.errors import ConfigError

BASE = {
    "state_dir": "state",
    "lines": [{"name": "reception", "extension": "100", "record_legs": ["caller", "mixed"]}],
    "extensions": [{"number": "201", "name": "Desk"}],
}


def parse(raw: dict, tmp_path: Path) -> config.Config:
    return config.parse(raw, base_dir=tmp_path)


def test_dev_config_loads() -> None:
    cfg = config.load(Path(__file__).parents[1] / "config" / "callvault.dev.toml")
    assert cfg.asterisk.sandbox
    assert {ln.name for ln in cfg.lines} >= {"reception", "echo"}
    assert cfg.line_by_extension("100") is not None


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    cfg = parse(BASE, tmp_path)
    assert cfg.state_dir == tmp_path / "state"
    assert cfg.database == tmp_path / "state" / "callvault.db"
    assert cfg.asterisk.ami_port == 5038
    assert cfg.lines[0].record_legs == ("caller", "mixed")
    assert cfg.lines[0].kind == "agent"


def test_unknown_leg_names_the_field(tmp_path: Path) -> None:
    raw = {**BASE, "lines": [{"name": "a", "extension": "100", "record_legs": ["calee"]}]}
    with pytest.raises(ConfigError) as exc:
        parse(raw, tmp_path)
    assert exc.value.field == "lines[0].record_legs[0]"
    assert "calee" in str(exc.value)


def test_duplicate_extension_names_both(tmp_path: Path) -> None:
    raw = {
        **BASE,
        "lines": [
            {"name": "a", "extension": "100"},
            {"name": "b", "extension": "100"},
        ],
    }
    with pytest.raises(ConfigError) as exc:
        parse(raw, tmp_path)
    assert exc.value.field == "lines[1].extension"
    assert "lines[0]" in str(exc.value)


def test_line_and_phone_share_number(tmp_path: Path) -> None:
    raw = {**BASE, "extensions": [{"number": "100", "name": "x"}]}
    with pytest.raises(ConfigError, match=r"extensions\[0\]\.number"):
        parse(raw, tmp_path)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"asterisk": {"ami_port": 70000}}, "asterisk.ami_port"),
        ({"asterisk": {"ami_prot": 5038}}, "asterisk.ami_prot"),
        ({"agent": {"max_calls": "many"}}, "agent.max_calls"),
        ({"agent": {"max_calls": 8}}, "agent.max_calls"),  # pjsua2 wheel: 4 calls a process
        ({"lines": [{"name": "Bad Name", "extension": "100"}]}, "lines[0].name"),
        ({"lines": [{"name": "a", "extension": "1a"}]}, "lines[0].extension"),
        ({"lines": [{"name": "a", "extension": "100", "kind": "robot"}]}, "lines[0].kind"),
        ({"lines": [{"extension": "100"}]}, "lines[0].name"),
        (
            {"extensions": [{"number": "201", "name": "x", "password": "short"}]},
            "extensions[0].password",
        ),
        ({"ip_peers": [{"name": "p", "match": "not-an-ip"}]}, "ip_peers[0].match"),
        ({"asterisk": {"rtp_start": 20000, "rtp_end": 10000}}, "asterisk.rtp_end"),
        (
            {"lines": [{"name": "a", "extension": "100", "recording": "maybe"}]},
            "lines[0].recording",
        ),
        ({"models": {"profile": "tpu"}}, "models.profile"),
    ],
)
def test_bad_values_name_their_field(tmp_path: Path, patch: dict, field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse({**BASE, **patch}, tmp_path)
    assert exc.value.field == field


def test_bad_toml_is_a_config_error(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("lines = [\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(p)
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "missing.toml")


def test_secrets_are_generated_once_and_private(tmp_path: Path) -> None:
    cfg = parse(BASE, tmp_path)
    first = cfg.ami_secret()
    assert len(first) >= 20
    assert cfg.ami_secret() == first
    path = tmp_path / "state" / "secrets" / "ami_secret"
    assert path.stat().st_mode & 0o777 == 0o600
    assert cfg.extension_password(cfg.extensions[0]) != first


def test_privacy_defaults(tmp_path: Path) -> None:
    cfg = parse(BASE, tmp_path)
    assert cfg.privacy.key_source == "file"
    assert cfg.privacy.master_key_path(cfg.state_dir) == tmp_path / "state" / "keys" / "master.key"
    assert cfg.privacy.default_region == "SE"


@pytest.mark.parametrize(
    ("privacy", "field"),
    [
        ({"key_source": "tpm"}, "privacy.key_source"),
        ({"key_source": "passphrase"}, "privacy.passphrase_file"),
        ({"default_region": "se"}, "privacy.default_region"),
        ({"default_region": "XX"}, "privacy.default_region"),
        ({"master_key": "x"}, "privacy.master_key"),
    ],
)
def test_bad_privacy_values_name_their_field(tmp_path: Path, privacy: dict, field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse({**BASE, "privacy": privacy}, tmp_path)
    assert exc.value.field == field


def test_passphrase_mode_parses(tmp_path: Path) -> None:
    raw = {**BASE, "privacy": {"key_source": "passphrase", "passphrase_file": "pass"}}
    cfg = parse(raw, tmp_path)
    assert cfg.privacy.passphrase_file == tmp_path / "pass"
