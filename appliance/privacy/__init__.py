"""Privacy engine: encryption at rest, data subjects, audit chain, do-not-call (issue 5)."""

from appliance.privacy.audit import Actor, AuditLog, Verification
from appliance.privacy.crypto import CryptoError
from appliance.privacy.identifiers import Identifier, IdentifierError
from appliance.privacy.keyring import KeyShreddedError
from appliance.privacy.pii import Pii
from appliance.privacy.service import Privacy, master_key_source

__all__ = [
    "Actor",
    "AuditLog",
    "CryptoError",
    "Identifier",
    "IdentifierError",
    "KeyShreddedError",
    "Pii",
    "Privacy",
    "Verification",
    "master_key_source",
]
