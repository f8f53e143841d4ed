"""A local certificate authority and server certificates for the TLS stand-in (never used on Lambda).

Neon's endpoints present publicly trusted certificates; locally, a CA of our own plays the public one, and the
app is told to trust it the way it trusts the system store: `SSL_CERT_FILE=<ca.crt>`. Created on first use
(`.data/tls/` for development, a temporary folder in the tests), never committed.

Besides the genuine server certificate, the tests need the two a man in the middle could present: a
self-signed certificate for the right host, and a certificate from the right CA for another host.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parents[2]
LOCAL_TLS_DIR = ROOT / ".data" / "tls"
# The names the local stand-ins answer to: the host, and the compose services.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "db", "pooler")
VALID_DAYS = 825  # the longest validity macOS accepts for a server certificate


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _alt_names(hosts: tuple[str, ...]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _write(directory: Path, stem: str, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> KeyPair:
    directory.mkdir(parents=True, exist_ok=True)
    pair = KeyPair(directory / f"{stem}.crt", directory / f"{stem}.key")
    pair.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.chmod(pair.key, 0o600)  # PostgreSQL refuses a key others can read
    pair.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return pair


def _certificate(
    subject: str,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    signing_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    hosts: tuple[str, ...] = (),
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        # Python 3.13's default context verifies strictly (VERIFY_X509_STRICT): it refuses a certificate without
        # an Authority Key Identifier, as publicly trusted ones all have.
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()), critical=False)
    )
    if ca:
        usage = dict(key_cert_sign=True, crl_sign=True, digital_signature=True, key_encipherment=False)
    else:
        usage = dict(key_cert_sign=False, crl_sign=False, digital_signature=True, key_encipherment=False)
        builder = builder.add_extension(_alt_names(hosts), critical=False).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    builder = builder.add_extension(
        x509.KeyUsage(
            content_commitment=False,
            data_encipherment=False,
            key_agreement=False,
            encipher_only=False,
            decipher_only=False,
            **usage,
        ),
        critical=True,
    )
    return builder.sign(signing_key, hashes.SHA256())


def create_ca(directory: Path, name: str = "task-api local CA") -> KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = _certificate(name, _name(name), key.public_key(), key, ca=True)
    return _write(directory, "ca", certificate, key)


def issue(ca: KeyPair, directory: Path, stem: str, hosts: tuple[str, ...]) -> KeyPair:
    """A server certificate for `hosts`, signed by `ca`."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{ca.key} is not an EC key made by this module; delete the folder to make a new CA")
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = _certificate(hosts[0], ca_cert.subject, key.public_key(), ca_key, ca=False, hosts=hosts)
    return _write(directory, stem, certificate, key)


def self_signed(directory: Path, stem: str, hosts: tuple[str, ...]) -> KeyPair:
    """A certificate for `hosts` that no CA vouches for: what a man in the middle can make for any name."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = _certificate(hosts[0], _name(hosts[0]), key.public_key(), key, ca=False, hosts=hosts)
    return _write(directory, stem, certificate, key)


def ensure_local_tls(directory: Path = LOCAL_TLS_DIR, hosts: tuple[str, ...] = LOCAL_HOSTS) -> tuple[KeyPair, KeyPair]:
    """The local CA and its server certificate for `hosts`, created on first use: (ca, server)."""
    ca, server = (
        KeyPair(directory / "ca.crt", directory / "ca.key"),
        KeyPair(directory / "server.crt", directory / "server.key"),
    )
    if not (ca.cert.exists() and ca.key.exists()):
        ca = create_ca(directory)
    if not (server.cert.exists() and server.key.exists()):
        server = issue(ca, directory, "server", hosts)
    return ca, server


if __name__ == "__main__":
    made_ca, made_server = ensure_local_tls()
    print(f"CA: {made_ca.cert}\nserver certificate: {made_server.cert} (key {made_server.key})")
