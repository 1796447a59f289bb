"""Test certificates, built one way for every test that needs TLS: a self-signed certificate for
loopback (simulators, the harness's Dovecot) and a small PKI (a CA and server certificates it
signed) for the TLS tests. EC P-256 keys, SHA-256, valid from yesterday for 30 days.

``trustme`` would do the same; it is not pinned because ``cryptography`` (already pinned, an
Airflow dependency) needs these few lines only, and the TLS tests need a certificate for a
host that is *not* loopback, which is one more call either way.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LOOPBACK_NAMES = (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
_CA_USAGE = x509.KeyUsage(
    digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
    key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
    decipher_only=False,
)  # fmt: skip


def name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def certificate(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    signing_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    names: Sequence[x509.GeneralName] = (),
    key_usage: bool = False,
) -> x509.Certificate:
    """A certificate of ``subject`` signed by ``signing_key`` (``issuer``'s), for ``names``."""
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if key_usage:
        builder = builder.add_extension(_CA_USAGE, critical=True)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def write_certificate(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def self_signed(
    directory: str | Path | None = None, common_name: str = "127.0.0.1"
) -> tuple[Path, Path]:
    """``(cert.pem, key.pem)`` in ``directory`` (a new temporary one when ``None``): a
    self-signed certificate for localhost and 127.0.0.1 that is its own CA."""
    directory = Path(directory or tempfile.mkdtemp(prefix="mailmigrate-tls-"))
    key = new_key()
    cert = certificate(name(common_name), name(common_name), key.public_key(), key, ca=True,
                       names=LOOPBACK_NAMES)  # fmt: skip
    return write_certificate(directory / "cert.pem", cert), write_key(directory / "key.pem", key)
