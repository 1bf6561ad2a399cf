from __future__ import annotations

import re

from appliance.voice.dialogue.say import TEMPLATES, Speaker, allowed, claims, invented

SHEET = "Callvault Dental. We are open Monday to Friday from 8 to 17. A cleaning costs 900 kronor."


def test_claims_are_numbers_days_months_and_names() -> None:
    assert claims("A cleaning costs 900 kronor on Tuesday with Doctor Svensson.") == {
        "900", "tuesday", "doctor", "svensson",
    }  # fmt: skip
    assert claims("May I have your name? It is on the 5th of May.") == {"5", "may"}
    assert claims("We open at eight thirty.") == {"8", "30"}


def test_the_checker_blocks_what_the_sheet_does_not_say() -> None:
    ok = allowed([SHEET])
    assert invented("A cleaning costs 900 kronor.", ok) == set()
    assert invented("A cleaning costs 950 kronor.", ok) == {"950"}
    assert invented("We are open on Saturday.", ok) == {"saturday"}
    assert invented("Doctor Berg will see you.", ok) == {"berg"}
    assert invented("We close at eighteen.", ok) == {"18"}


def test_a_rephrasing_that_invents_is_never_spoken() -> None:
    speaker = Speaker(SHEET, rephrase=lambda text: "Sure! Our cleaning is only 500 kronor today.")
    said = speaker.say("ask_name", {})
    assert said == TEMPLATES["ask_name"] and speaker.blocked == 1
    honest = Speaker(SHEET, rephrase=lambda text: "Could you tell me your name?")
    assert honest.say("ask_name", {}) == "Could you tell me your name?" and honest.blocked == 0


def test_every_template_passes_with_its_own_values() -> None:
    speaker = Speaker(SHEET)
    values = {
        "business": "Callvault Dental", "day": "Tuesday the 24th of November", "time": "14:30",
        "name": "Anna Berg", "phone": "070-123 45 67", "weekday": "Saturday",
        "what": "book an appointment",
    }  # fmt: skip
    for key, text in TEMPLATES.items():
        needed = {k: values[k] for k in re.findall(r"{(\w+)}", text)}
        assert speaker.say(key, needed) == text.format(**needed), key
    assert speaker.blocked == 0


def test_quoted_text_keeps_only_supported_sentences() -> None:
    speaker = Speaker(SHEET)
    quoted = speaker.quote("Hello from Callvault Dental. Our cheapest visit is 99 kronor.")
    assert quoted == "Hello from Callvault Dental." and speaker.blocked == 1
