"""SIP user agents built on pjsua2 (the only place that imports it).

One `PjRuntime` per process owns the pjsua2 endpoint on its own thread; `SipAccount`,
`SipAgent` and `SipPhone` run on it and hand out `SipCall`s with 20 ms PCM frames.
"""

from appliance.telephony.sip.account import SipAccount
from appliance.telephony.sip.agent import CallHandler, SipAgent
from appliance.telephony.sip.call import FRAME_BYTES, SAMPLE_RATE, CallEnd, CallState, SipCall
from appliance.telephony.sip.phone import SipPhone
from appliance.telephony.sip.runtime import PjRuntime, SipError, SipTransport

__all__ = [
    "FRAME_BYTES",
    "SAMPLE_RATE",
    "CallEnd",
    "CallHandler",
    "CallState",
    "PjRuntime",
    "SipAccount",
    "SipAgent",
    "SipCall",
    "SipError",
    "SipPhone",
    "SipTransport",
]
