"""Event signing with a key on a PKCS#11 token: a private SoftHSM2 token per test.

SoftHSM reads SOFTHSM2_CONF when the module is initialised, so the fixture points it at a
configuration under tmp_path and initialises this process's copy of the module again;
subprocesses (the command line) inherit the variable.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pkcs11
import pytest
from asn1crypto.core import OctetString
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.util.ec import encode_named_curve_parameters

from agent.config import load_config
from agent.contract.chain import check_capture
from agent.contract.events import Draft
from agent.contract.pkcs11 import Pkcs11Signer, create_token_key, parse_pkcs11_uri
from agent.contract.signing import Verifier, load_device_signer
from agent.demo.sandbox import write_toml
from agent.errors import ConfigError, KeyFileError
from agent.fleet.remote_config import PROTECTED
from agent.spine.outbox import Outbox

# Debian's softhsm2 (scripts/bootstrap); resolved as the signer and the configuration do
MODULE = Path("/usr/lib/softhsm/libsofthsm2.so").resolve()
LABEL, PIN, SO_PIN = "cocoon", "4711", "87654321"
URI = f"pkcs11:token={LABEL};object=device-signing;id=%01"


@dataclass
class Token:
    module: Path
    uri: str
    pin_file: Path
    public_key: ec.EllipticCurvePublicKey  # read from the token by the fixture itself

    @property
    def public_pem(self) -> bytes:
        return self.public_key.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture
def softhsm(tmp_path, monkeypatch) -> Token:
    """A fresh SoftHSM token holding one P-256 key pair (label device-signing, id 01)."""
    assert MODULE.is_file(), "SoftHSM2 is missing: scripts/bootstrap installs softhsm2"
    root = tmp_path / "softhsm"
    (root / "tokens").mkdir(parents=True)
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", LABEL,
                    "--pin", PIN, "--so-pin", SO_PIN], check=True, capture_output=True)
    lib = pkcs11.lib(str(MODULE))
    lib.reinitialize()  # this process reads the new SOFTHSM2_CONF
    with lib.get_token(token_label=LABEL).open(rw=True, user_pin=PIN) as session:
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True)
        public, _ = params.generate_keypair(store=True, label="device-signing", id=b"\x01")
        point = bytes(OctetString.load(public[Attribute.EC_POINT]))
    pin_file = tmp_path / "token.pin"
    pin_file.write_text(PIN + "\n")
    pin_file.chmod(0o600)
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    return Token(MODULE, URI, pin_file, key)


def token_config(tmp_path: Path, token: Token, **device) -> Path:
    (tmp_path / "keys").mkdir(exist_ok=True)
    return write_toml(tmp_path / "agent.toml", {
        "device": {"id": "dev-a", "data_dir": "data", "signing_key": token.uri,
                   "pkcs11_module": str(token.module), "pkcs11_pin_file": "token.pin",
                   **device},
        "mqtt": {"host": "127.0.0.1", "ca_file": "ca.pem", "cert_file": "c.pem",
                 "key_file": "c.key"},
        "keys": {"ingest_public_key_file": "keys/ingest.pem"},
    })


def cocoon(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "agent.cli.main", *map(str, args)],
                          capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
    return proc


def outbox_capture(outbox_file: Path, capture: Path) -> Path:
    with sqlite3.connect(outbox_file) as conn:
        rows = conn.execute("SELECT payload FROM events ORDER BY seq").fetchall()
    capture.write_bytes(b"".join(bytes(r[0]) + b"\n" for r in rows))
    return capture


# --- the signer ------------------------------------------------------------------------------

def test_kid_is_the_sha256_of_the_token_keys_der_spki(softhsm):
    signer = Pkcs11Signer(softhsm.uri, softhsm.module, softhsm.pin_file)
    der = softhsm.public_key.public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    assert signer.alg == "ES256"
    assert signer.kid == hashlib.sha256(der).hexdigest()
    assert signer.public_key_pem() == softhsm.public_pem


def test_outbox_events_signed_on_the_token_verify(softhsm, tmp_path):
    signer = Pkcs11Signer(softhsm.uri, softhsm.module, softhsm.pin_file)
    with Outbox(tmp_path / "outbox.sqlite", device="dev-a", signer=signer,
                telemetry_batch_ms=0) as outbox:
        for i, priority in enumerate(["money", "alert", "telemetry", "alert"]):
            outbox.append(Draft("test.token", priority, {"n": i}))
    verifier = Verifier.from_pem(softhsm.public_pem)  # the fixture's key, not the signer's
    capture = outbox_capture(tmp_path / "outbox.sqlite", tmp_path / "capture.jsonl")
    with capture.open("rb") as fh:
        report = check_capture(fh, verifier)
    assert report.ok, report.problems
    assert "4 valid events" in report.summary()
    sig = signer.sign(b"data")
    assert len(sig) == 64
    verifier.verify("ES256", signer.kid, b"data", sig)


def test_wrong_pin_is_a_clear_key_error(softhsm, tmp_path):
    wrong = tmp_path / "wrong.pin"
    wrong.write_text("0000\n")
    with pytest.raises(KeyFileError, match="refused the PIN in the PIN file"):
        Pkcs11Signer(softhsm.uri, softhsm.module, wrong)
    with pytest.raises(KeyFileError, match="needs its user PIN"):
        Pkcs11Signer(softhsm.uri, softhsm.module, None)
    with pytest.raises(KeyFileError, match="no PIN file"):
        Pkcs11Signer(softhsm.uri, softhsm.module, tmp_path / "absent.pin")


def test_missing_token_key_or_module_are_clear_key_errors(softhsm, tmp_path):
    with pytest.raises(KeyFileError, match=r"no such token .*tokens present: 'cocoon'"):
        Pkcs11Signer("pkcs11:token=other;object=device-signing", softhsm.module,
                     softhsm.pin_file)
    with pytest.raises(KeyFileError, match="no such private key.*keygen --on-token"):
        Pkcs11Signer(f"pkcs11:token={LABEL};object=nothing", softhsm.module, softhsm.pin_file)
    with pytest.raises(KeyFileError, match="no PKCS#11 module"):
        Pkcs11Signer(softhsm.uri, tmp_path / "absent.so", softhsm.pin_file)


def test_a_signer_survives_another_closing_the_shared_login(softhsm):
    # A PKCS#11 login belongs to the process: closing one logged-in session logs out all.
    first = Pkcs11Signer(softhsm.uri, softhsm.module, softhsm.pin_file)
    second = Pkcs11Signer(softhsm.uri, softhsm.module, softhsm.pin_file)
    first.close()
    Verifier.from_pem(softhsm.public_pem).verify("ES256", second.kid, b"x", second.sign(b"x"))
    assert len(first.sign(b"y")) == 64  # a closed signer opens a session again


def test_a_signer_refuses_another_key_found_after_a_lost_session(softhsm):
    signer = Pkcs11Signer(softhsm.uri, softhsm.module, softhsm.pin_file)
    token = pkcs11.lib(str(MODULE)).get_token(token_label=LABEL)
    with token.open(rw=True) as session:  # shares the signer's login
        for key in session.get_objects({Attribute.ID: b"\x01"}):
            key.destroy()
        params = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
            local=True)
        params.generate_keypair(store=True, label="device-signing", id=b"\x01")
    with pytest.raises(KeyFileError, match=f"another key than kid {signer.kid}"):
        signer.sign(b"x")


def test_a_key_created_on_the_token_is_unextractable(softhsm):
    uri = f"pkcs11:token={LABEL};object=made-here"
    signer = create_token_key(uri, softhsm.module, softhsm.pin_file)
    assert signer.alg == "ES256" and len(signer.sign(b"x")) == 64
    with pytest.raises(KeyFileError, match="already holds this key; refusing to replace it"):
        create_token_key(uri, softhsm.module, softhsm.pin_file)
    signer.close()  # its login would be this session's too
    with pkcs11.lib(str(MODULE)).get_token(token_label=LABEL).open(user_pin=PIN) as session:
        key = session.get_key(ObjectClass.PRIVATE_KEY, KeyType.EC, label="made-here")
        assert key[Attribute.SENSITIVE] and not key[Attribute.EXTRACTABLE]
        assert key[Attribute.TOKEN] and key[Attribute.NEVER_EXTRACTABLE]


# --- URIs and configuration --------------------------------------------------------------------

def test_uri_parsing():
    uri = parse_pkcs11_uri("pkcs11:token=My%20Token;serial=0123;object=dev;id=%01%ab;type=private")
    assert (uri.token, uri.serial, uri.object, uri.id, uri.type) == \
        ("My Token", "0123", "dev", b"\x01\xab", "private")
    for text, message in [
        ("token=x;object=y", "starts with 'pkcs11:'"),
        ("pkcs11:token=x", "object= .* or id="),
        ("pkcs11:object=y;type=public", "private key"),
        ("pkcs11:object=y?pin-value=1234", "never written in the URI"),
        ("pkcs11:object=y?module-path=/x.so", r"\[device\] pkcs11_module"),
        ("pkcs11:object=y;object=z", "given twice"),
        ("pkcs11:object=y;colour=blue", "not supported"),
        ("pkcs11:object=%zz", "two hex digits"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_pkcs11_uri(text)


def test_config_with_a_token_key(tmp_path):
    token = Token(MODULE, URI, tmp_path / "token.pin", None)
    cfg = load_config(token_config(tmp_path, token))
    assert cfg.device.signing_key == URI and cfg.device.signing_alg == "ES256"
    assert cfg.device.pkcs11_module == MODULE
    assert cfg.device.pkcs11_pin_file == tmp_path / "token.pin"
    for device, message in [
        ({"signing_key": "pkcs11:token=x"}, r"\[device\] signing_key: expected a PKCS#11 URI"),
        ({"signing_key": "/etc/key.pem"}, r"\[device\] signing_key: expected a PKCS#11 URI"),
        ({"signing_alg": "Ed25519"}, r"\[device\] signing_alg: expected ES256 with a key on"),
        ({"signing_key_file": "k.pem"}, r"\[device\] signing_key_file: not with signing_key"),
    ]:
        with pytest.raises(ConfigError, match=message) as err:
            load_config(token_config(tmp_path, token, **device))
        assert str(tmp_path / "agent.toml") in str(err.value)
    path = token_config(tmp_path, token)
    text = path.read_text().replace(f'pkcs11_module = "{MODULE}"\n', "")
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"\[device\] pkcs11_module: missing"):
        load_config(path)
    path.write_text(text.replace(f'signing_key = "{URI}"\n', ""))
    with pytest.raises(ConfigError, match=r"\[device\] pkcs11_pin_file: only with signing_key"):
        load_config(path)


def test_a_remote_configuration_cannot_move_the_signing_key():
    for key in ("signing_key", "pkcs11_module", "pkcs11_pin_file"):
        assert ("device", key) in PROTECTED


def test_load_device_signer_picks_the_token(softhsm, tmp_path):
    softhsm.pin_file.rename(tmp_path / "token.pin")
    cfg = load_config(token_config(tmp_path, softhsm))
    signer = load_device_signer(cfg.device)
    assert isinstance(signer, Pkcs11Signer) and signer.public_key_pem() == softhsm.public_pem


# --- the command line and a whole installation ---------------------------------------------------

def test_cli_identity_keygen_emit_and_verify(softhsm, tmp_path):
    config = token_config(tmp_path, softhsm, pkcs11_pin_file=str(softhsm.pin_file))
    refused = cocoon("--config", config, "keygen", check=False)
    assert refused.returncode == 2 and "keygen --on-token" in refused.stderr
    assert not (tmp_path / "data" / "device-signing.key").exists()

    ident = cocoon("--config", config, "identity", "--public-key").stdout
    assert ident.encode() == softhsm.public_pem
    seqs = [cocoon("--config", config, "emit", "--type", "test.manual", "--priority", p,
                   "--body", json.dumps({"n": i})).stdout.strip()
            for i, p in enumerate(["money", "alert"])]
    assert seqs == ["1", "2"]
    pem = tmp_path / "dev.pem"
    pem.write_text(ident)
    capture = outbox_capture(tmp_path / "data" / "outbox.sqlite", tmp_path / "capture.jsonl")
    ok = cocoon("verify", "--public-key", pem, capture)
    assert ok.stdout.strip().splitlines()[-1].startswith("OK: 2 valid events")

    other = token_config(tmp_path, softhsm, pkcs11_pin_file=str(softhsm.pin_file),
                         signing_key=f"pkcs11:token={LABEL};object=second")
    made = cocoon("--config", other, "keygen", "--on-token")
    assert "BEGIN PUBLIC KEY" in made.stdout and "on the token" in made.stderr
    assert cocoon("--config", other, "identity", "--public-key").stdout == made.stdout
    again = cocoon("--config", other, "keygen", "--on-token", check=False)
    assert again.returncode == 2 and "refusing to replace it" in again.stderr


def test_an_agent_with_a_token_key_delivers_verified_events(softhsm, site, services):
    from tests.support.running import add_device, ingest_rejections, ingest_store_rows
    from tests.support.waiting import wait_for

    device = "station-01"
    config = add_device(site, device, device_section={
        "signing_key": softhsm.uri, "pkcs11_module": str(softhsm.module),
        "pkcs11_pin_file": str(softhsm.pin_file)})
    site.device_public_key(device).write_bytes(softhsm.public_pem)  # registered with the ingest
    ingest = services.ingest(site.ingest_config)
    ingest.wait_connected()
    agent = services.agent(config)
    agent.wait_connected()
    assert isinstance(agent.outbox.signer, Pkcs11Signer)
    seq = agent.append("test.token", "money", {"n": 1})
    done = cocoon("--config", config, "emit", "--type", "test.token", "--priority", "alert",
                  "--body", json.dumps({"n": 2}))  # another process, the same token key
    last = int(done.stdout.strip())
    assert last > seq
    wait_for(lambda: agent.outbox.acked_seq() >= last, 20, what="events acknowledged")
    rows = [r for r in ingest_store_rows(site, device) if r["type"] == "test.token"]
    assert len(rows) == 2 and not ingest_rejections(site, device)


def test_doctor_checks_the_token_key_and_its_pin_file(softhsm, tmp_path):
    from agent.fleet.doctor_checks import Status, check_token_signer

    softhsm.pin_file.rename(tmp_path / "token.pin")
    cfg = load_config(token_config(tmp_path, softhsm))
    good = check_token_signer(cfg.device)
    assert good.status is Status.OK and "ES256" in good.detail
    (tmp_path / "token.pin").unlink()
    bad = check_token_signer(cfg.device)
    assert bad.status is Status.FAIL and "PIN" in bad.detail and "pkcs11_pin_file" in bad.hint
