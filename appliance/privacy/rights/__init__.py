"""Data subject rights requests (GDPR Art. 15-22) as a resumable status machine."""

from appliance.privacy.rights.model import (
    Kind,
    RightsError,
    RightsRequest,
    Status,
    UnknownSubjectError,
    VerificationError,
)
from appliance.privacy.rights.service import CodeSender, Rights

__all__ = [
    "CodeSender",
    "Kind",
    "Rights",
    "RightsError",
    "RightsRequest",
    "Status",
    "UnknownSubjectError",
    "VerificationError",
]
