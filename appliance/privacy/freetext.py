"""Free text in governance records (review reasons, breach descriptions) stays free of
personal data: these rows outlive erasure, so a number or an e-mail typed into them would
escape it. A check, not a guarantee — it catches the identifiers the appliance itself handles
(phone numbers valid for the region or in E.164, e-mail addresses).
"""

from __future__ import annotations

import re

import phonenumbers

from appliance.errors import CallvaultError

_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[A-Za-z]{2,}")


class FreeTextError(CallvaultError):
    pass


def clean_text(
    value: str, what: str, *, limit: int, region: str = "SE", required: bool = True
) -> str:
    """`value` stripped, or FreeTextError naming `what` (empty, too long, holds an identifier).

    Phone numbers count only when valid (phonenumbers' VALID leniency), so dates, call ids
    (`1712345678.12`) and case references pass.
    """
    value = value.strip()
    if required and not value:
        raise FreeTextError(f"{what} is required")
    if len(value) > limit:
        raise FreeTextError(f"{what} is longer than {limit} characters")
    if _EMAIL.search(value):
        raise FreeTextError(f"{what} contains an e-mail address: write it without personal data")
    for _ in phonenumbers.PhoneNumberMatcher(value, region, leniency=phonenumbers.Leniency.VALID):
        raise FreeTextError(f"{what} contains a phone number: write it without personal data")
    return value
