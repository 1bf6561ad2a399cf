"""Identifiers of data subjects, normalised so one person is one key and one blind index.

Phone numbers become E.164 (`phonenumbers`; numbers without a country code are read in the
configured default region), e-mails are lower-cased, the box's own extensions stay as dialled.
The canonical text is what the blind index (an HMAC) is computed over.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

import phonenumbers

from appliance.errors import CallvaultError

Kind = Literal["phone", "email", "extension", "other", "call"]
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Caller ID values that name nobody: not subjects.
WITHHELD = frozenset({"", "anonymous", "unknown", "restricted", "private", "unavailable"})


class IdentifierError(CallvaultError):
    pass


@dataclass(frozen=True)
class Identifier:
    kind: Kind
    value: str

    @property
    def canonical(self) -> str:
        """Unambiguous across kinds: E.164 starts with '+', e-mails hold '@', the rest a tag."""
        if self.kind in {"phone", "email"}:
            return self.value
        return f"{self.kind}:{self.value}"


def phone(raw: str, region: str, extensions: Collection[str] = ()) -> Identifier:
    """A number as the operator or a CSV gives it: an extension of this box, or E.164."""
    text = raw.strip()
    if text in extensions:
        return Identifier("extension", text)
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise IdentifierError(f"{raw!r} is not a phone number ({exc})") from None
    if not phonenumbers.is_valid_number(parsed):
        raise IdentifierError(
            f"{raw!r} is not a valid phone number (read in region {region}; "
            "give it as +<country code><number>)"
        )
    return Identifier(
        "phone", phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    )


def email(raw: str) -> Identifier:
    text = raw.strip().lower()
    if not _EMAIL.match(text):
        raise IdentifierError(f"{raw!r} is not an e-mail address")
    return Identifier("email", text)


def parse(raw: str, region: str, extensions: Collection[str] = ()) -> Identifier:
    """An operator's lookup key: an e-mail if it has '@', else a phone number."""
    return email(raw) if "@" in raw else phone(raw, region, extensions)


def from_caller_id(raw: str, region: str, extensions: Collection[str]) -> Identifier | None:
    """What a CDR number says about who was on the call; None when it names nobody.

    Unlike `phone`, this never rejects: a number that does not parse (a SIP user name, a
    short code) is kept verbatim as kind `other`, so no call goes unlinked.
    """
    text = raw.strip()
    if text.lower() in WITHHELD:
        return None
    try:
        return phone(text, region, extensions)
    except IdentifierError:
        return Identifier("other", text)
