"""`Pii`: personal data that prints masked, for application logs.

`log.warning("refused %s", Pii(number))` logs `+46*******67`. It deliberately is not a `str`
subclass: a str subclass leaks its raw value through concatenation, `json.dumps` and most C
code, while this type fails loudly there; the raw value is only reachable through `reveal()`.
"""

from __future__ import annotations

from typing import Any


def mask(value: str) -> str:
    if "@" in value:
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain[:1]}***"
    if len(value) <= 4:
        return "*" * len(value)
    keep_head = 3 if len(value) > 8 else 1
    return value[:keep_head] + "*" * (len(value) - keep_head - 2) + value[-2:]


class Pii:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return mask(self._value)

    def __repr__(self) -> str:
        return f"Pii({mask(self._value)!r})"

    def __format__(self, spec: str) -> str:
        return format(mask(self._value), spec)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pii) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("pii", self._value))

    def __reduce__(self) -> Any:
        raise TypeError("Pii values are not pickled (they would leave the process unmasked)")
