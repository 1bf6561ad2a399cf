"""Errors a user can act on; the CLI prints them without a traceback."""


class CallvaultError(Exception):
    """Base for errors whose message is meant for the operator."""


class ConfigError(CallvaultError):
    """The TOML config is invalid; `field` names the offending key (e.g. `lines[1].record_legs`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
