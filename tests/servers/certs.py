"""A throwaway CA and certificates for TLS tests, written as PEM files to a directory.

Every leaf is valid for `localhost` and 127.0.0.1, as a server and as a client (the services of
one deployment share a CA; each presents its certificate both ways under mutual TLS).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Leaf:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Certs:
    ca: Path
    # What the services serve and, under mutual TLS, present as clients.
    service: Leaf
    # A certificate from another CA: a stranger under mutual TLS.
    stranger: Leaf

    def env(self, client_auth: bool = False) -> dict[str, str]:
        """The CHATMESH_TLS_* settings of a service with the shared certificate."""
        return {
            "CHATMESH_TLS_CERT_FILE": str(self.service.cert),
            "CHATMESH_TLS_KEY_FILE": str(self.service.key),
            "CHATMESH_TLS_CA_FILE": str(self.ca),
            "CHATMESH_TLS_CLIENT_AUTH": "true" if client_auth else "false",
        }


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _builder(subject: str, issuer: str, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _ca(directory: Path, name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(name, name, key)
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key, path


def _leaf(
    directory: Path, name: str, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> Leaf:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    cert = (
        _builder(name, str(issuer), key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
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
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    leaf = Leaf(directory / f"{name}.crt", directory / f"{name}.key")
    leaf.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, leaf.key)
    return leaf


def make_certs(directory: Path) -> Certs:
    """A CA, a service certificate it signs, and a stranger's from a second CA."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key, ca_path = _ca(directory, "chatmesh-test-ca")
    other, other_key, _ = _ca(directory, "other-ca")
    return Certs(
        ca=ca_path,
        service=_leaf(directory, "service", ca, ca_key),
        stranger=_leaf(directory, "stranger", other, other_key),
    )
