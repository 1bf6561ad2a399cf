from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from appliance import config
from appliance.errors import ConfigError
from appliance.voice.dialogue.playbook import parse_playbook
from tests.voice.dialogue.runner import playbook

GOOD: dict[str, Any] = {
    "business": "Smith Plumbing",
    "timezone": "Europe/Stockholm",
    "hours": {"mon": "08:00-12:00", "tue": ["08:00-12:00", "13:00-17:00"]},
    "facts": [{"key": "price", "keywords": ["price"], "answer": "A visit costs 500 kronor."}],
}


def test_the_dev_config_has_a_receptionist_playbook() -> None:
    pb = playbook()
    assert pb.business == "Callvault Dental" and pb.slot_minutes == 30
    assert pb.hours["fri"] == ((8 * 60, 15 * 60),) and "sat" not in pb.hours
    assert pb.slots["book"] == ("name", "date", "time")
    assert {f.key for f in pb.facts} >= {"hours", "address", "cleaning_price"}


def test_a_good_playbook_parses() -> None:
    pb = parse_playbook(GOOD, "lines[0].playbook")
    assert pb.hours["tue"] == ((480, 720), (780, 1020))
    assert pb.facts[0].keywords == ("price",)


@pytest.mark.parametrize(
    ("change", "where", "why"),
    [
        ({"business": ""}, "lines[0].playbook.business", "non-empty"),
        ({"timezone": "Mars/Olympus"}, "lines[0].playbook.timezone", "IANA"),
        ({"hours": {"mon": "17:00-08:00"}}, "lines[0].playbook.hours.mon", "closes before"),
        ({"hours": {"mon": "8-17"}}, "lines[0].playbook.hours.mon", "HH:MM-HH:MM"),
        ({"hours": {"funday": "08:00-09:00"}}, "lines[0].playbook.hours.funday", "weekday"),
        (
            {"hours": {"mon": ["08:00-12:00", "11:00-13:00"]}},
            "lines[0].playbook.hours.mon",
            "overlap",
        ),
        ({"hours": {}}, "lines[0].playbook.hours", "needs opening hours"),
        ({"tasks": ["book", "dance"]}, "lines[0].playbook.tasks[1]", "unknown task"),
        ({"slots": {"book": ["name", "time"]}}, "lines[0].playbook.slots.book", "'date'"),
        (
            {"slots": {"book": ["date", "time", "shoe"]}},
            "lines[0].playbook.slots.book[2]",
            "not a slot",
        ),
        ({"slots": {"question": ["name"]}}, "lines[0].playbook.slots.question", "collects no"),
        (
            {"facts": [{"key": "x", "keywords": [], "answer": "y"}]},
            "lines[0].playbook.facts[0].keywords",
            "at least one",
        ),
        ({"slot_minutes": 1}, "lines[0].playbook.slot_minutes", "between 5 and 480"),
        ({"colour": "blue"}, "lines[0].playbook.colour", "unknown key"),
    ],
)
def test_a_bad_playbook_names_the_key(change: dict[str, Any], where: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_playbook({**GOOD, **change}, "lines[0].playbook")
    assert err.value.field == where
    assert why in str(err.value)


def test_the_line_config_carries_the_playbook(tmp_path: Path) -> None:
    raw = {"lines": [{"name": "shop", "extension": "100", "playbook": GOOD}]}
    cfg = config.parse(raw, base_dir=tmp_path)
    line = cfg.line_by_name("shop")
    assert line is not None and line.playbook is not None
    assert line.playbook.business == "Smith Plumbing"
    free = config.parse({"lines": [{"name": "x", "extension": "100"}]}, base_dir=tmp_path)
    assert free.lines[0].playbook is None
