"""ES256 event signing with a key that never leaves a PKCS#11 token (secure element, TPM, HSM).

The device's key is named by an RFC 7512 URI (`[device] signing_key = "pkcs11:token=...;
object=..."`), the token's module by `[device] pkcs11_module` and its user PIN by a file
(`[device] pkcs11_pin_file`; never inline, so a URI may be copied into a ticket or a log).
Only ECDSA P-256 is supported: no secure element or TPM signs Ed25519.

The data is hashed here with SHA-256 and the digest signed on the token with CKM_ECDSA: a secure
element on I2C then receives 32 bytes instead of the whole event, and every token that signs
P-256 has the mechanism. A token without raw CKM_ECDSA is asked for CKM_ECDSA_SHA256 instead.
Both give the same 64-byte r||s signature as the software ES256 signer, and the key id is the
SHA-256 of the token key's DER SubjectPublicKeyInfo, as for a key file (docs/events.md).

`pkcs11` (python-pkcs11, the optional extra `pkcs11`) and `cryptography` are imported where
they are used: the URI parser below serves the configuration without either.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, unquote_to_bytes

from agent.contract.errors import KeyFileError, SignatureError
from agent.contract.signing import low_s

ES256 = "ES256"
SECP256R1_OID = "1.2.840.10045.3.1.7"
_PATH_ATTRS = ("token", "manufacturer", "serial", "model", "slot-id", "object", "id", "type")
_QUERY_HINTS = {
    "pin-value": "a PIN is never written in the URI: put it in the file named by "
                 "[device] pkcs11_pin_file",
    "pin-source": "name the PIN file with [device] pkcs11_pin_file",
    "module-path": "name the module with [device] pkcs11_module",
    "module-name": "name the module with [device] pkcs11_module",
}
_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")


@dataclass(frozen=True)
class Pkcs11Uri:
    """The parts of an RFC 7512 URI that pick the token and the private key on it."""

    text: str
    token: str | None = None         # the token's label
    manufacturer: str | None = None
    serial: str | None = None
    model: str | None = None
    slot_id: int | None = None
    object: str | None = None        # the key's label (CKA_LABEL)
    id: bytes | None = None          # the key's CKA_ID
    type: str | None = None          # "private" when given

    def describe(self) -> str:
        return self.text


def parse_pkcs11_uri(text: str) -> Pkcs11Uri:
    """Parse a `pkcs11:` URI naming a private key; raise ValueError saying what is wrong."""
    if not isinstance(text, str) or not text.startswith("pkcs11:"):
        raise ValueError("a PKCS#11 URI starts with 'pkcs11:'")
    rest = text[len("pkcs11:"):]
    path, _, query = rest.partition("?")
    if _PCT.search(rest):
        raise ValueError("'%' must be followed by two hex digits")
    values: dict = {}
    for part in filter(None, path.split(";")):
        name, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"attribute {name!r} has no '=value'")
        if name not in _PATH_ATTRS:
            raise ValueError(f"attribute {name!r} is not supported; expected "
                             f"{', '.join(_PATH_ATTRS)}")
        if name in values:
            raise ValueError(f"attribute {name!r} is given twice")
        values[name] = value
    for part in filter(None, query.split("&")):
        name = part.partition("=")[0]
        hint = _QUERY_HINTS.get(name, "the URI takes no query attributes here")
        raise ValueError(f"query attribute {name!r}: {hint}")
    fields: dict = {}
    for name in ("token", "manufacturer", "serial", "model", "object"):
        if name in values:
            fields[name] = unquote(values[name], errors="strict")
    if "id" in values:
        fields["id"] = unquote_to_bytes(values["id"])
        if not fields["id"]:
            raise ValueError("id is empty")
    if "slot-id" in values:
        if not values["slot-id"].isdigit():
            raise ValueError("slot-id must be a decimal number")
        fields["slot_id"] = int(values["slot-id"])
    if "type" in values:
        if values["type"] != "private":
            raise ValueError(f"type={values['type']}: the signing key is a private key "
                             "(type=private, or leave type out)")
        fields["type"] = "private"
    if "object" not in fields and "id" not in fields:
        raise ValueError("name the key with object= (its label) or id=")
    return Pkcs11Uri(text, **fields)


def read_pin(pin_file: Path | None) -> str | None:
    """The user PIN from its file (one line; a final newline is not part of it)."""
    if pin_file is None:
        return None
    try:
        data = Path(pin_file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyFileError(f"{pin_file}: no PIN file (named by [device] pkcs11_pin_file); "
                           "write the token's user PIN in it, mode 0600") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise KeyFileError(f"{pin_file}: cannot read the token PIN: {reason}") from None
    pin = data.removesuffix("\n").removesuffix("\r")
    if not pin or "\n" in pin:
        raise KeyFileError(f"{pin_file}: expected the token's user PIN on one line")
    return pin


def _load_module(module: Path):
    try:
        import pkcs11
    except ImportError:
        raise KeyFileError(
            "signing through PKCS#11 needs python-pkcs11: pip install 'cocoon-agent[pkcs11]'"
        ) from None
    if not Path(module).is_file():
        raise KeyFileError(f"{module}: no PKCS#11 module (named by [device] pkcs11_module)")
    try:
        # python-pkcs11 keeps one library per path string, and a second C_Initialize of the
        # same module fails: every path to it (a symbolic link, say) must be the same string.
        return pkcs11.lib(str(Path(module).resolve()))
    except pkcs11.PKCS11Error as exc:
        raise KeyFileError(f"{module}: cannot load the PKCS#11 module: {exc}") from None


def _token_name(token) -> str:
    return f"{token.label!r} (serial {token.serial.decode('ascii', 'replace').strip()})"


def _find_token(lib, uri: Pkcs11Uri, module: Path):
    import pkcs11

    try:
        slots = lib.get_slots(token_present=True)
    except pkcs11.PKCS11Error as exc:
        raise KeyFileError(f"{module}: cannot list the tokens: {exc!r}") from None
    tokens = []
    for slot in slots:
        if uri.slot_id is not None and slot.slot_id != uri.slot_id:
            continue
        try:
            token = slot.get_token()
        except pkcs11.PKCS11Error:
            continue  # removed meanwhile
        if not pkcs11.TokenFlag.TOKEN_INITIALIZED & token.flags:
            continue  # a free slot (SoftHSM keeps one), or a token never set up
        wanted = ((uri.token, token.label), (uri.manufacturer, token.manufacturer_id),
                  (uri.model, token.model),
                  (uri.serial, token.serial.decode("ascii", "replace").strip()))
        if all(want is None or want == have.strip() for want, have in wanted):
            tokens.append(token)
    if not tokens:
        present = []
        for slot in slots:
            try:
                token = slot.get_token()
            except pkcs11.PKCS11Error:
                continue
            if pkcs11.TokenFlag.TOKEN_INITIALIZED & token.flags:
                present.append(_token_name(token))
        present = ", ".join(present) or "none"
        raise KeyFileError(f"{uri.describe()}: no such token in {module} "
                           f"(tokens present: {present})")
    if len(tokens) > 1:
        raise KeyFileError(f"{uri.describe()}: {len(tokens)} tokens match "
                           f"({', '.join(map(_token_name, tokens))}); name one with token=")
    return tokens[0]


def _login(token, pin: str | None, uri: Pkcs11Uri, rw: bool = False):
    import pkcs11

    name = _token_name(token)
    if pin is None and pkcs11.TokenFlag.LOGIN_REQUIRED & token.flags:
        raise KeyFileError(f"{uri.describe()}: token {name} needs its user PIN; name a file "
                           "holding it with [device] pkcs11_pin_file")
    try:
        try:
            return token.open(rw=rw, user_pin=pin)
        except pkcs11.UserAlreadyLoggedIn:
            # A login holds for all of a process's sessions with the token: another signer
            # of this process has logged in, and this session shares its login.
            return token.open(rw=rw)
    except pkcs11.PinIncorrect:
        raise KeyFileError(
            f"{uri.describe()}: token {name} refused the PIN in the PIN file "
            "([device] pkcs11_pin_file); a token locks its key after a few wrong PINs, so "
            "fix the file before trying again") from None
    except pkcs11.PinLocked:
        raise KeyFileError(f"{uri.describe()}: token {name} has locked its user PIN after too "
                           "many wrong ones; its security officer must unlock it") from None
    except (pkcs11.PinInvalid, pkcs11.PinLenRange):
        raise KeyFileError(f"{uri.describe()}: the PIN file holds no valid PIN for token "
                           f"{name} ([device] pkcs11_pin_file)") from None
    except pkcs11.PKCS11Error as exc:
        raise KeyFileError(f"{uri.describe()}: cannot open token {name}: {exc!r}") from None


def _key_attrs(uri: Pkcs11Uri) -> dict:
    from pkcs11 import Attribute

    attrs: dict = {}
    if uri.object is not None:
        attrs[Attribute.LABEL] = uri.object
    if uri.id is not None:
        attrs[Attribute.ID] = uri.id
    return attrs


def _find_keys(session, uri: Pkcs11Uri):
    """The private key the URI names and its public key's DER SubjectPublicKeyInfo."""
    import pkcs11
    from pkcs11 import Attribute, KeyType, ObjectClass

    attrs = _key_attrs(uri)
    found = list(session.get_objects({**attrs, Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
    if not found:
        raise KeyFileError(f"{uri.describe()}: no such private key on the token; create it "
                           "with 'cocoon-agent keygen --on-token'")
    if len(found) > 1:
        raise KeyFileError(f"{uri.describe()}: {len(found)} private keys match; name one "
                           "with both object= and id=")
    private = found[0]
    if private.key_type != KeyType.EC:
        raise KeyFileError(f"{uri.describe()}: a {private.key_type.name} key; expected an "
                           "ECDSA P-256 key")
    # The public half: the public key object with the private key's id, else the one with the
    # URI's attributes.
    try:
        key_id = private[Attribute.ID]
    except pkcs11.PKCS11Error:
        key_id = None
    for search in ({Attribute.ID: key_id} if key_id else None, attrs):
        if not search:
            continue
        public = list(session.get_objects({**search, Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                                           Attribute.KEY_TYPE: KeyType.EC}))
        if len(public) == 1:
            from pkcs11.util.ec import encode_ec_public_key

            return private, encode_ec_public_key(public[0])
    raise KeyFileError(f"{uri.describe()}: the token holds no public key for this private "
                       "key (a public key object with the same id or label)")


def _public_key(spki: bytes, uri: Pkcs11Uri):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_der_public_key(spki)
    except ValueError as exc:
        raise KeyFileError(f"{uri.describe()}: the token's public key is unreadable: "
                           f"{exc}") from None
    if not (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)):
        raise KeyFileError(f"{uri.describe()}: the key is not on curve P-256 (secp256r1); "
                           "events are signed with ES256")
    return key


class Pkcs11Signer:
    """Signs events (ES256, raw r||s) with a private key that stays on a PKCS#11 token.

    One logged-in session is kept open; signing is serialised, since a PKCS#11 session runs
    one operation at a time. A session lost to a token reset or a re-plugged device is opened
    again once before a signature fails.
    """

    alg = ES256

    def __init__(self, uri: Pkcs11Uri | str, module: str | Path, pin_file: Path | None = None,
                 *, mechanism: str | None = None):
        self.uri = parse_pkcs11_uri(uri) if isinstance(uri, str) else uri
        self.module = Path(module)
        self._pin = read_pin(pin_file)
        self._lock = threading.Lock()
        self._lib = _load_module(self.module)
        self._session = self._private = self._spki = None
        self._open()
        try:
            self._check(mechanism)
        except BaseException:
            self.close()
            raise

    def _check(self, mechanism: str | None) -> None:
        from agent.contract.signing import Verifier, key_id

        self._public = _public_key(self._spki, self.uri)
        self.kid = key_id(self._public)
        self.mechanism = mechanism or self._choose_mechanism()
        # The public key found must belong to the private key, or the ingest would reject
        # every event: one signature is checked before anything is signed for real.
        probe = b"cocoon-agent: PKCS#11 key check"
        try:
            Verifier.from_public_key(self._public).verify(ES256, self.kid, probe,
                                                           self.sign(probe))
        except SignatureError:
            raise KeyFileError(f"{self.uri.describe()}: the token's public key does not "
                               "verify the private key's signature") from None

    def _open(self) -> None:
        self._token = _find_token(self._lib, self.uri, self.module)
        self._session = _login(self._token, self._pin, self.uri)
        try:
            private, spki = _find_keys(self._session, self.uri)
            if self._spki not in (None, spki):  # opened again, and the URI finds another key
                raise KeyFileError(f"{self.uri.describe()}: the token now holds another key "
                                   f"than kid {self.kid}; start the agent again")
        except BaseException:
            self.close()
            raise
        self._private, self._spki = private, spki

    def _choose_mechanism(self) -> str:
        import pkcs11

        try:
            available = self._token.slot.get_mechanisms()
        except pkcs11.PKCS11Error:
            available = set()
        if pkcs11.Mechanism.ECDSA in available or pkcs11.Mechanism.ECDSA_SHA256 not in available:
            return "ECDSA"
        return "ECDSA_SHA256"

    def public_key_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._public.public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, data: bytes) -> bytes:
        import pkcs11

        mechanism = getattr(pkcs11.Mechanism, self.mechanism)
        message = hashlib.sha256(data).digest() if self.mechanism == "ECDSA" else bytes(data)
        lost = (pkcs11.SessionHandleInvalid, pkcs11.SessionClosed, pkcs11.DeviceRemoved,
                pkcs11.TokenNotPresent, pkcs11.UserNotLoggedIn, pkcs11.ObjectHandleInvalid,
                pkcs11.KeyHandleInvalid)
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._session is None:
                        self._open()
                    sig = self._private.sign(message, mechanism=mechanism)
                    break
                except lost as exc:
                    self.close()
                    if attempt == 2:
                        raise KeyFileError(f"{self.uri.describe()}: the token is gone: "
                                           f"{exc!r}") from None
                except pkcs11.PKCS11Error as exc:
                    raise KeyFileError(f"{self.uri.describe()}: the token did not sign: "
                                       f"{exc!r}") from None
        if len(sig) != 64:
            raise KeyFileError(f"{self.uri.describe()}: the token gave a {len(sig)}-byte "
                               "signature; expected 64 (r||s of P-256)")
        return low_s(bytes(sig))      # one signature per event, as the software signer

    def close(self) -> None:
        """Close the token session (a later signature opens another)."""
        session, self._session, self._private = self._session, None, None
        if session is not None:
            try:
                session.close()
            except Exception:  # the session may already be gone with its token
                pass


def create_token_key(uri: Pkcs11Uri | str, module: str | Path,
                     pin_file: Path | None = None) -> Pkcs11Signer:
    """Generate a P-256 key pair on the token, private key unextractable; never replace one.

    The key gets the URI's label (object=) and id (id=, else 8 random bytes), so the same URI
    finds it afterwards.
    """
    import os

    import pkcs11
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11.util.ec import encode_named_curve_parameters

    uri = parse_pkcs11_uri(uri) if isinstance(uri, str) else uri
    module = Path(module)
    lib = _load_module(module)
    token = _find_token(lib, uri, module)
    with _login(token, read_pin(pin_file), uri, rw=True) as session:
        existing = list(session.get_objects({**_key_attrs(uri),
                                             Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
        if existing:
            raise KeyFileError(f"{uri.describe()}: the token already holds this key; refusing "
                               "to replace it")
        key_id = uri.id if uri.id is not None else os.urandom(8)
        try:
            params = session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(SECP256R1_OID)},
                local=True)
            params.generate_keypair(
                store=True, id=key_id, label=uri.object,
                private_template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                                  Attribute.PRIVATE: True, Attribute.SIGN: True},
                public_template={Attribute.VERIFY: True})
        except pkcs11.PKCS11Error as exc:
            raise KeyFileError(f"{uri.describe()}: the token could not create a P-256 key: "
                               f"{exc!r}") from None
    return Pkcs11Signer(uri, module, pin_file)
