from __future__ import annotations

import json
import logging

import pytest

from appliance.privacy import Pii


def test_prints_masked_everywhere_a_log_looks() -> None:
    p = Pii("+46701234567")
    assert str(p) == "+46*******67"
    assert f"{p}" == "+46*******67"
    assert "%s" % p == "+46*******67"  # noqa: UP031 - logging formats like this
    assert "1234" not in repr(p)
    assert p.reveal() == "+46701234567"
    assert str(Pii("anna@example.com")) == "a***@e***"
    assert str(Pii("201")) == "***"


def test_does_not_leak_through_str_operations() -> None:
    p = Pii("+46701234567")
    with pytest.raises(TypeError):
        _ = "number: " + p  # type: ignore[operator]
    with pytest.raises(TypeError):
        json.dumps(p)


def test_logging_masks(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("t").info("calling %s", Pii("+46701234567"))
    assert "+46701234567" not in caplog.text and "+46*******67" in caplog.text
