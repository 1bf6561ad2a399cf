"""The admin listener's certificate: generated self-signed on first start unless one is given.

The installer (or the admin UI later) can replace it with the organisation's own; a generated
one is ECDSA P-256, valid 2 years, for the box's hostname, `localhost` and the bind address.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.config import Config
from appliance.errors import CallvaultError

VALID_DAYS = 730


class TlsError(CallvaultError):
    pass


def ensure_certificate(cfg: Config) -> tuple[Path, Path]:
    cert, key = cfg.admin.cert_paths(cfg.state_dir)
    if cfg.admin.tls_cert is not None:
        for p in (cert, key):
            if not p.is_file():
                raise TlsError(f"admin TLS file {p} does not exist")
        return cert, key
    if cert.is_file() and key.is_file():
        return cert, key
    generate(cert, key, cfg.admin.bind)
    return cert, key


def generate(cert_path: Path, key_path: Path, bind: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    host = socket.gethostname()
    names: list[x509.GeneralName] = [x509.DNSName(host), x509.DNSName("localhost")]
    for addr in {bind, "127.0.0.1"}:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(addr)))
        except ValueError:
            names.append(x509.DNSName(addr))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"callvault {host}")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
