from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from appliance.config import Config
from appliance.errors import ConfigError
from appliance.pbx.model import (
    Extension,
    InboundRoute,
    Override,
    Trunk,
    check_config,
    from_dict,
    to_dict,
)
from tests.pbx.conftest import sample


def test_sample_is_valid(cfg: Config) -> None:
    check_config(sample(), cfg)


@pytest.mark.parametrize(
    ("change", "where", "why"),
    [
        (lambda p: replace(p, extensions=(replace(p.extensions[0], number="100"),)),
         "extension '100'.number", "line 'reception'"),
        (lambda p: replace(p, extensions=(replace(p.extensions[0], number="201"),)),
         "extension '201'.number", "config-file extension 201"),
        (lambda p: replace(p, routes=(replace(p.routes[0], destination="extension:399"),)),
         "route '4631100200'.destination", "no enabled extension 399"),
        (lambda p: replace(p, routes=(replace(p.routes[0], closed_destination="line:nope"),)),
         "closed_destination", "no line 'nope'"),
        (lambda p: replace(p, outbound=(replace(p.outbound[0], trunk="gone"),)),
         "outbound 'national'.trunk", "no trunk 'gone'"),
        (lambda p: replace(p, outbound=(replace(p.outbound[0], patterns=("_0X.;x",)),)),
         "patterns", "not a dial pattern"),
        (lambda p: replace(p, outbound=(replace(p.outbound[0], patterns=("201",)),)),
         "patterns", "shadow an internal number"),
        (lambda p: replace(p, trunks=(replace(p.trunks[0], codecs=("speex",)), p.trunks[1])),
         "codecs", "unknown codec"),
        (lambda p: replace(p, trunks=(replace(p.trunks[1], password=""), p.trunks[0])),
         "password", "needed for a registration trunk"),
        (lambda p: replace(p, trunks=(p.trunks[0], replace(p.trunks[1], dids=("4631100200",)))),
         "trunk '4631100200'", "used twice"),
        (lambda p: replace(p, routes=(replace(p.routes[0], hours=("mon-fri 18:00-08:00",)),)),
         "hours", "start must be before end"),
        (lambda p: replace(p, routes=(replace(p.routes[0], timezone="Mars/Olympus"),)),
         "timezone", "unknown time zone"),
        (lambda p: replace(p, extensions=(replace(p.extensions[0], name='x" <1>'),)),
         "name", "no quotes"),
        (lambda p: replace(p, trunks=(replace(p.trunks[0], host="a b"), p.trunks[1])),
         "host", "not an IP address"),
    ],
)  # fmt: skip
def test_refuses_with_where_and_why(cfg: Config, change: object, where: str, why: str) -> None:
    bad = change(sample())  # type: ignore[operator]
    with pytest.raises(ConfigError) as err:
        check_config(bad, cfg)
    assert where in str(err.value) and why in str(err.value)


def test_opening_hours_holidays_and_time_zone() -> None:
    r = InboundRoute(
        did="4631100200", destination="extension:301", closed_destination="line:reception",
        hours=("mon-fri 08:00-17:00", "sat 10:00-12:00"), holidays=("2026-12-24",),
        timezone="Europe/Stockholm",
    )  # fmt: skip
    # 2026-11-24 is a Tuesday; Stockholm is UTC+1 in November.
    assert r.is_open(datetime(2026, 11, 24, 7, 0, tzinfo=UTC))  # 08:00 local
    assert not r.is_open(datetime(2026, 11, 24, 6, 59, tzinfo=UTC))
    assert not r.is_open(datetime(2026, 11, 24, 16, 0, tzinfo=UTC))  # 17:00 local: closed
    assert r.is_open(datetime(2026, 11, 28, 9, 30, tzinfo=UTC))  # Saturday 10:30
    assert not r.is_open(datetime(2026, 11, 29, 9, 30, tzinfo=UTC))  # Sunday
    assert not r.is_open(datetime(2026, 12, 24, 9, 0, tzinfo=UTC))  # holiday Thursday
    assert InboundRoute(did="12", destination="hangup").is_open(datetime.now(UTC))


def test_dict_round_trip_and_clear_input_errors() -> None:
    t = Trunk(name="carrier", host="192.0.2.1", dids=("123",), max_channels=3)
    assert from_dict(Trunk, to_dict(t), "trunk") == t
    r = InboundRoute(did="12", destination="hangup", overrides=(Override("+4670", "line:x"),))
    assert from_dict(InboundRoute, to_dict(r), "route") == r
    # Form input: comma-separated lists and numbers as text.
    f = from_dict(Trunk, {"name": "c", "host": "h.lan", "dids": "1234, 5678", "port": "5070"}, "t")
    assert f.dids == ("1234", "5678") and f.port == 5070
    with pytest.raises(ConfigError, match="unknown field"):
        from_dict(Trunk, {"name": "c", "host": "h", "hots": "x"}, "trunk")
    with pytest.raises(ConfigError, match="missing field"):
        from_dict(Extension, {"name": "x"}, "extension")
    with pytest.raises(ConfigError, match=r"trunk\.max_channels.*whole number"):
        from_dict(Trunk, {"name": "c", "host": "h", "max_channels": "many"}, "trunk")
