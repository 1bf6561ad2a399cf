"""Callvault: an on-prem AI telephony appliance."""

__version__ = "0.1.0"
