from __future__ import annotations

import pytest

from appliance.campaign.model import CampaignError, Settings


def test_settings_round_trip_and_defaults() -> None:
    s = Settings.from_dict({"windows": ["mon-fri 10:00-12:00"], "retry_s": {"busy": 60}})
    assert s.retry_s["busy"] == 60 and s.retry_s["no_answer"] == 3600
    assert Settings.from_json(s.to_json()) == s


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "must be an object"),
        ({"nope": 1}, "unknown campaign settings: nope"),
        ({"windows": "mon 09:00-10:00"}, "windows must be a list of strings"),
        ({"windows": ["someday"]}, "calling window 'someday'"),
        ({"max_attempts": 0}, "max_attempts must be a whole number of at least 1"),
        ({"max_attempts": True}, "max_attempts must be a whole number"),
        ({"retry_s": {"later": 5}}, "retry_s: unknown outcome 'later'"),
        ({"retry_s": {"busy": -1}}, "retry_s.busy must be seconds"),
        ({"dial": "PJSIP/{x}"}, "dial must contain"),
        ({"dial": "PJSIP/{digits}{x}"}, "only {number} and {digits}"),
        ({"dial": "PJSIP/{digits}\r\nAction: Logoff"}, "is not an Asterisk channel"),
    ],
)
def test_bad_settings_are_named(doc: object, message: str) -> None:
    with pytest.raises(CampaignError, match=message.replace("{", r"\{").replace("}", r"\}")):
        Settings.from_dict(doc)
