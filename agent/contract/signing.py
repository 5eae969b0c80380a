"""Pluggable signers and verifiers for events, acks and commands.

Two algorithms, chosen per key: Ed25519 (software keys) and ES256, ECDSA P-256 with SHA-256 and a
raw 64-byte r||s signature, because secure elements such as the ATECC608 sign only P-256. A key
id (`kid`) is the lowercase hex SHA-256 of the DER SubjectPublicKeyInfo, so a verifier can pick
the right pinned key without trusting anything the signer says about itself.

`cryptography` (keys, PEM, ECDSA) is imported where it is used, not with this module: the MQTT
link's process only verifies Ed25519 acks, through libsodium, with a key the agent hands it raw,
and saves the 11 MiB that loading OpenSSL's bindings costs.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import nacl.bindings
import nacl.exceptions

from agent.contract.durable import fsync_dir
from agent.contract.errors import KeyFileError, SignatureError

ED25519 = "Ed25519"
ES256 = "ES256"
#: The order of P-256's group: an ECDSA signature (r, s) verifies as (r, n - s) too.
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def is_high_s(sig: bytes) -> bool:
    """Whether a 64-byte ES256 signature r||s has s above n/2 (its other, malleated form)."""
    return len(sig) == 64 and int.from_bytes(sig[32:], "big") > P256_N // 2


def low_s(sig: bytes) -> bytes:
    """The low-s form of a 64-byte ES256 signature r||s (s replaced by n - s when s > n/2).

    Both forms verify for the same bytes: anyone can turn one into the other without the key.
    Devices sign with low s, so that an event has one signature; the ingest stores the low-s
    form of whatever copy it receives (docs/ingest.md)."""
    if not is_high_s(sig):
        return bytes(sig)
    return sig[:32] + (P256_N - int.from_bytes(sig[32:], "big")).to_bytes(32, "big")


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
    from cryptography.hazmat.primitives import serialization

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
        from cryptography.hazmat.primitives import serialization

        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def private_key_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

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
        from cryptography.hazmat.primitives import serialization

        super().__init__(private_key)
        seed = private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        self._secret = nacl.bindings.crypto_sign_seed_keypair(seed)[1]

    @classmethod
    def generate(cls) -> Ed25519Signer:
        from cryptography.hazmat.primitives.asymmetric import ed25519

        return cls(ed25519.Ed25519PrivateKey.generate())

    def sign(self, data: bytes) -> bytes:
        # crypto_sign returns the signature followed by the message
        return nacl.bindings.crypto_sign(data, self._secret)[:nacl.bindings.crypto_sign_BYTES]


class ES256Signer(_SoftwareSigner):
    """ECDSA P-256 with SHA-256; signatures always in their low-s form (`low_s`)."""

    alg = ES256

    @classmethod
    def generate(cls) -> ES256Signer:
        from cryptography.hazmat.primitives.asymmetric import ec

        return cls(ec.generate_private_key(ec.SECP256R1()))

    def sign(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
        return low_s(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


@dataclass(frozen=True)
class Verifier:
    """A pinned public key that checks signatures of one algorithm.

    Ed25519 signatures are checked by libsodium against the raw key (`raw`); `public_key` (a
    `cryptography` key) is kept for ES256 and for callers that export the key, and is None in
    a verifier made from the raw bytes alone (`from_raw_ed25519`).
    """

    public_key: object
    alg: str
    kid: str
    raw: bytes | None = None

    @classmethod
    def from_public_key(cls, public_key) -> Verifier:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519

        if isinstance(public_key, ed25519.Ed25519PublicKey):
            raw = public_key.public_bytes(serialization.Encoding.Raw,
                                          serialization.PublicFormat.Raw)
            return cls(public_key, ED25519, key_id(public_key), raw)
        if isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(
            public_key.curve, ec.SECP256R1
        ):
            return cls(public_key, ES256, key_id(public_key))
        raise KeyFileError("unsupported public key: expected Ed25519 or ECDSA P-256")

    @classmethod
    def from_raw_ed25519(cls, raw: bytes, kid: str) -> Verifier:
        """An Ed25519 verifier from the 32 raw key bytes and the key id that a verifier made
        from the PEM file computed (`raw` and `kid` of it): for a process that must not load
        `cryptography`."""
        if len(raw) != nacl.bindings.crypto_sign_PUBLICKEYBYTES:
            raise KeyFileError("an Ed25519 public key is 32 bytes")
        return cls(None, ED25519, kid, bytes(raw))

    @classmethod
    def from_pem(cls, pem: bytes) -> Verifier:
        from cryptography.hazmat.primitives import serialization

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
        if self.alg == ED25519:
            if len(sig) != nacl.bindings.crypto_sign_BYTES:
                raise SignatureError("signature does not verify")
            try:
                nacl.bindings.crypto_sign_open(bytes(sig) + bytes(data), self.raw)
            except nacl.exceptions.BadSignatureError:
                raise SignatureError("signature does not verify") from None
            return
        if len(sig) != 64:
            raise SignatureError("ES256 signature must be 64 bytes (r||s)")
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        try:
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
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not an unencrypted PEM private key: {exc}") from None
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return Ed25519Signer(key)
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return ES256Signer(key)
    raise KeyFileError(f"{path}: unsupported key type; expected Ed25519 or ECDSA P-256")


def load_device_signer(device) -> Signer:
    """The device's event signer from its `[device]` configuration: the key on a PKCS#11
    token when `signing_key` names one (agent/contract/pkcs11.py), else the key file."""
    if getattr(device, "signing_key", None):
        from agent.contract.pkcs11 import Pkcs11Signer

        return Pkcs11Signer(device.signing_key, device.pkcs11_module, device.pkcs11_pin_file)
    return load_signer(device.signing_key_file)
