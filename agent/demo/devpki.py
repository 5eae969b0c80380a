"""Throwaway local certificate authority for the demo and the tests.

This module is NOT for production provisioning: keys are generated on the
local disk, the CA key sits next to the certificates it signs, there is no
revocation, no HSM, no audit trail.  It exists so that the demo and the test
suite can run a real TLS + client-certificate MQTT setup without any external
PKI.

All keys are EC P-256.  Certificates are valid from one day in the past (to
tolerate clock skew) to 825 days ahead.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertPair", "LocalCA"]

_VALID_BEFORE = _dt.timedelta(days=1)
_VALID_AFTER = _dt.timedelta(days=825)
# Common names become file names: keep them to a safe alphabet.
_CN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class CertPair:
    """Paths of a PEM certificate and its PEM (unencrypted PKCS#8) key."""

    cert_file: Path
    key_file: Path


def _write_private(path: Path, data: bytes) -> None:
    """Write *data* to *path*, creating it with mode 0600 from the start."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)  # in case the file already existed with other bits


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _validity() -> tuple[_dt.datetime, _dt.datetime]:
    now = _dt.datetime.now(_dt.timezone.utc)
    return now - _VALID_BEFORE, now + _VALID_AFTER


class LocalCA:
    """A self-signed CA stored as ``ca.pem`` / ``ca.key`` in a directory.

    Use :meth:`create` to obtain one; it loads the existing CA when both
    files are already present so repeated runs reuse the same trust anchor.
    """

    def __init__(
        self,
        directory: Path,
        cert: x509.Certificate,
        key: ec.EllipticCurvePrivateKey,
    ) -> None:
        self.directory = Path(directory)
        self.cert = cert
        self.key = key
        self.cert_file = self.directory / "ca.pem"
        self.key_file = self.directory / "ca.key"

    @classmethod
    def create(cls, directory: Path, name: str = "cocoon-dev-ca") -> LocalCA:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        cert_file = directory / "ca.pem"
        key_file = directory / "ca.key"
        if cert_file.exists() and key_file.exists():
            cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
            key = serialization.load_pem_private_key(key_file.read_bytes(), None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{key_file} is not an EC private key")
            return cls(directory, cert, key)

        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cocoon dev (NOT FOR PRODUCTION)"),
                x509.NameAttribute(NameOID.COMMON_NAME, name),
            ]
        )
        not_before, not_after = _validity()
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
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
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        _write_private(key_file, _key_pem(key))
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(directory, cert, key)

    @property
    def crl_file(self) -> Path:
        return self.directory / "crl.pem"

    def revoke(self, cert_file: Path) -> Path:
        """Add the certificate in `cert_file` to this CA's CRL (`crl.pem`) and return its
        path; a broker started with it refuses that certificate."""
        serial = x509.load_pem_x509_certificate(Path(cert_file).read_bytes()).serial_number
        revoked = set()
        if self.crl_file.exists():
            old = x509.load_pem_x509_crl(self.crl_file.read_bytes())
            revoked = {r.serial_number for r in old}
        revoked.add(serial)
        now = _dt.datetime.now(_dt.timezone.utc)
        builder = (x509.CertificateRevocationListBuilder()
                   .issuer_name(self.cert.subject)
                   .last_update(now - _dt.timedelta(minutes=5))
                   .next_update(now + _dt.timedelta(days=7)))
        for number in sorted(revoked):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(number)
                .revocation_date(now - _dt.timedelta(minutes=1)).build())
        crl = builder.sign(self.key, hashes.SHA256())
        self.crl_file.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        return self.crl_file

    def issue(self, common_name: str, *, server: bool = False) -> CertPair:
        """Issue (or reuse) ``<cn>.pem`` / ``<cn>.key`` signed by this CA.

        Server certificates carry SAN DNS ``localhost`` and IP ``127.0.0.1``
        and the serverAuth EKU; client certificates carry clientAuth.
        """
        if not _CN_RE.match(common_name) or common_name in ("ca",):
            raise ValueError(f"unsupported common name for the dev CA: {common_name!r}")
        pair = CertPair(
            cert_file=self.directory / f"{common_name}.pem",
            key_file=self.directory / f"{common_name}.key",
        )
        if pair.cert_file.exists() and pair.key_file.exists():
            return pair

        key = ec.generate_private_key(ec.SECP256R1())
        not_before, not_after = _validity()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,  # ECDH(E) with EC keys
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        _write_private(pair.key_file, _key_pem(key))
        pair.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return pair
