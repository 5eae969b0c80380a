"""Pluggable signers and verifiers for events, acks and commands.

Two algorithms, chosen per key: Ed25519 (software keys) and ES256, ECDSA P-256 with SHA-256 and a
raw 64-byte r||s signature, because secure elements such as the ATECC608 sign only P-256. A key
id (`kid`) is the lowercase hex SHA-256 of the DER SubjectPublicKeyInfo, so a verifier can pick
the right pinned key without trusting anything the signer says about itself.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import nacl.bindings
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from .durable import fsync_dir
from .errors import KeyFileError, SignatureError

ED25519 = "Ed25519"
ES256 = "ES256"


def b64url(data: bytes) -> str:
    """Unpadded base64url, as used for `sig` fields."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not isinstance(text, str) or "=" in text:
        raise SignatureError("signature must be unpadded base64url text")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"signature is not base64url: {exc}") from None


def key_id(public_key) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


class Signer(Protocol):
    """What the event writer needs from a key, wherever it lives (file, TPM, secure element)."""

    alg: str
    kid: str

    def sign(self, data: bytes) -> bytes: ...

    def public_key_pem(self) -> bytes: ...


class _SoftwareSigner:
    def __init__(self, private_key):
        self._key = private_key
        self.kid = key_id(private_key.public_key())

    def public_key_pem(self) -> bytes:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def private_key_pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


class Ed25519Signer(_SoftwareSigner):
    """Signs through libsodium (PyNaCl); the key is loaded, generated and exported through
    `cryptography` as everywhere else.

    Every event is signed inside the outbox's commit path, while the uplink's thread wants the
    same interpreter: libsodium signs in about 60 % of OpenSSL's time here and, called through
    cffi, without holding the GIL. Ed25519 signatures are deterministic (RFC 8032), so both
    libraries give the same bytes for the same key and message (tested).
    """

    alg = ED25519

    def __init__(self, private_key):
        super().__init__(private_key)
        seed = private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        self._secret = nacl.bindings.crypto_sign_seed_keypair(seed)[1]

    @classmethod
    def generate(cls) -> Ed25519Signer:
        return cls(ed25519.Ed25519PrivateKey.generate())

    def sign(self, data: bytes) -> bytes:
        # crypto_sign returns the signature followed by the message
        return nacl.bindings.crypto_sign(data, self._secret)[:nacl.bindings.crypto_sign_BYTES]


class ES256Signer(_SoftwareSigner):
    alg = ES256

    @classmethod
    def generate(cls) -> ES256Signer:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    def sign(self, data: bytes) -> bytes:
        r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@dataclass(frozen=True)
class Verifier:
    """A pinned public key that checks signatures of one algorithm."""

    public_key: object
    alg: str
    kid: str

    @classmethod
    def from_public_key(cls, public_key) -> Verifier:
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            alg = ED25519
        elif isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(
            public_key.curve, ec.SECP256R1
        ):
            alg = ES256
        else:
            raise KeyFileError("unsupported public key: expected Ed25519 or ECDSA P-256")
        return cls(public_key, alg, key_id(public_key))

    @classmethod
    def from_pem(cls, pem: bytes) -> Verifier:
        try:
            key = serialization.load_pem_public_key(pem)
        except ValueError as exc:
            raise KeyFileError(f"not a PEM public key: {exc}") from None
        return cls.from_public_key(key)

    @classmethod
    def from_file(cls, path: str | Path) -> Verifier:
        try:
            pem = Path(path).read_bytes()
        except OSError as exc:
            raise KeyFileError(f"{path}: cannot read public key: {exc.strerror}") from None
        try:
            return cls.from_pem(pem)
        except KeyFileError as exc:
            raise KeyFileError(f"{path}: {exc}") from None

    def verify(self, alg: str, kid: str, data: bytes, sig: bytes) -> None:
        """Raise SignatureError unless `sig` is this key's signature of `data`."""
        if alg != self.alg:
            raise SignatureError(f"algorithm {alg!r} does not match the pinned key ({self.alg})")
        if kid != self.kid:
            raise SignatureError("key id does not match the pinned key")
        try:
            if self.alg == ED25519:
                self.public_key.verify(sig, data)
            else:
                if len(sig) != 64:
                    raise SignatureError("ES256 signature must be 64 bytes (r||s)")
                der = encode_dss_signature(
                    int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
                )
                self.public_key.verify(der, data, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise SignatureError("signature does not verify") from None


def signer_for(alg: str):
    return {ED25519: Ed25519Signer, ES256: ES256Signer}[alg]


def generate_key_file(path: str | Path, alg: str = ED25519) -> _SoftwareSigner:
    """Create a new private key file readable by its owner only; never overwrite one."""
    path = Path(path)
    signer = signer_for(alg).generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path}: a key already exists; refusing to overwrite it") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(signer.private_key_pem())
        fh.flush()
        os.fsync(fh.fileno())
    fsync_dir(path.parent)  # the key's directory entry too: a new device must not lose its key
    return signer


def load_signer(path: str | Path) -> _SoftwareSigner:
    path = Path(path)
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(
            f"{path}: no signing key; create one with 'cocoon-agent keygen'"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read signing key: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not an unencrypted PEM private key: {exc}") from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return Ed25519Signer(key)
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return ES256Signer(key)
    raise KeyFileError(f"{path}: unsupported key type; expected Ed25519 or ECDSA P-256")
