"""AMI list actions against the real Asterisk: lists end at their "…Complete" event, an error
reply is an error (not a wait that never ends), an empty list is empty."""

from __future__ import annotations

import pytest

from appliance.server import Appliance
from appliance.telephony.ami import AmiError

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_list_action_returns_its_items(app: Appliance) -> None:
    rows = await app.telephony.ami.action_list("PJSIPShowEndpoints")
    endpoints = {r.get("ObjectName") for r in rows if r.get("Event") == "EndpointList"}
    assert {"201", "202"} <= endpoints, rows
    assert rows[-1].get("Event") == "EndpointListComplete"


async def test_an_error_reply_raises_with_asterisks_reason(app: Appliance) -> None:
    with pytest.raises(AmiError, match="PJSIPShowEndpoint failed at "):
        await app.telephony.ami.action_list("PJSIPShowEndpoint", Endpoint="nosuchendpoint")


async def test_an_unknown_action_raises_instead_of_hanging(app: Appliance) -> None:
    with pytest.raises(AmiError, match="NoSuchAction failed"):
        await app.telephony.ami.action_list("NoSuchAction")
