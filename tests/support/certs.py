"""Throwaway certificates for the TLS tests: a CA, a certificate it signs for localhost /
127.0.0.1 (used by servers and, for mutual TLS, as the client certificate), and a rogue CA
with its own client certificate, which a server must refuse; and generations (each its own
CA and certificate) for rotating a server's files."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: str, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def make_ca(common_name: str):
    key = _key()
    cert = (
        _builder(common_name, _name(common_name), key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_leaf(common_name: str, ca_key, ca_cert):
    """A certificate for localhost and 127.0.0.1, good for servers and clients."""
    key = _key()
    cert = (
        _builder(common_name, ca_cert.subject, key.public_key())
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _write(directory: Path, name: str, key, cert) -> tuple[str, str]:
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return str(cert_path), str(key_path)


@dataclass(frozen=True)
class Certificates:
    ca: str  # the CA every service trusts
    cert: str  # signed by it, for localhost / 127.0.0.1
    key: str
    rogue_ca: str  # another CA, trusted by nobody
    rogue_cert: str  # signed by the rogue CA
    rogue_key: str


def make_certificates(directory: Path) -> Certificates:
    ca_key, ca_cert = make_ca("recsys test CA")
    rogue_ca_key, rogue_ca_cert = make_ca("rogue CA")
    ca, _ = _write(directory, "ca", None, ca_cert)
    rogue_ca, _ = _write(directory, "rogue-ca", None, rogue_ca_cert)
    cert, key = _write(directory, "service", *make_leaf("recsys-service", ca_key, ca_cert))
    rogue_cert, rogue_key = _write(
        directory, "rogue", *make_leaf("intruder", rogue_ca_key, rogue_ca_cert)
    )
    return Certificates(ca, cert, key, rogue_ca, rogue_cert, rogue_key)


@dataclass(frozen=True)
class Generation:
    """One generation of a server's files: its own CA and a certificate it signs for
    localhost / 127.0.0.1, with that certificate's serial and SHA-256 fingerprint."""

    ca: str
    cert: str
    key: str
    serial: int
    fingerprint: bytes


def make_generation(directory: Path, name: str) -> Generation:
    ca_key, ca_cert = make_ca(f"recsys {name} CA")
    ca, _ = _write(directory, f"{name}-ca", None, ca_cert)
    key, cert = make_leaf(f"recsys-service {name}", ca_key, ca_cert)
    cert_path, key_path = _write(directory, name, key, cert)
    return Generation(
        ca, cert_path, key_path, cert.serial_number, cert.fingerprint(hashes.SHA256())
    )
