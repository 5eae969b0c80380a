"""The event wire contract: the documented test vector, schemas, signing and refusals."""

import json
import re
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.contract import events
from agent.contract.envelope import canonical, sign_object, verify_object
from agent.contract.events import Context, Draft
from agent.contract.signing import Ed25519Signer, ES256Signer, Verifier, b64url_decode
from agent.errors import EventFormatError, SignatureError

DOC = Path(__file__).resolve().parent.parent / "docs" / "events.md"


def doc_block(tag: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    m = re.search(r"```\w+ " + re.escape(tag) + r"\n(.*?)\n```", text, re.S)
    assert m, f"docs/events.md has no block tagged {tag}"
    return m.group(1)


def vector_signer():
    seed = bytes.fromhex(doc_block("vector:seed-hex").strip())
    return Ed25519Signer(ed25519.Ed25519PrivateKey.from_private_bytes(seed))


def test_documented_vector_byte_for_byte():
    signer = vector_signer()
    assert signer.public_key_pem().decode().strip() == doc_block("vector:public-key").strip()
    assert signer.kid == doc_block("vector:kid").strip()
    event = json.loads(doc_block("vector:event"))
    unsigned = {k: v for k, v in event.items() if k != "sig"}
    assert canonical(unsigned) == doc_block("vector:signed-bytes").encode("utf-8")
    assert sign_object(unsigned, signer)["sig"] == doc_block("vector:sig").strip() == event["sig"]
    assert events.event_hash(event) == doc_block("vector:hash").strip()
    verifier = Verifier.from_pem(doc_block("vector:public-key").encode())
    events.verify(event, verifier)


def test_the_chain_resumed_vector_verifies_parses_and_is_accepted(ingest_store_location):
    """The documented chain.resumed follows the documented event across a declared loss:
    its signature, its body, and the ingest's watermark over the lost seqs."""
    from ingest.store import IngestStore

    signer = vector_signer()
    resumed = json.loads(doc_block("vector:resumed-event"))
    unsigned = {k: v for k, v in resumed.items() if k != "sig"}
    assert sign_object(unsigned, signer)["sig"] == resumed["sig"]
    assert events.event_hash(resumed) == doc_block("vector:resumed-hash").strip()
    after_seq, after_hash, lost = events.resumed_chain(resumed)
    assert (after_seq, lost) == (42, [(43, 1065)])
    assert after_hash == resumed["prev"] == doc_block("vector:hash").strip()
    store = IngestStore(ingest_store_location)
    registry = {"station-01": Verifier.from_pem(signer.public_key_pem())}
    topic = "cocoon/v1/station-01/events"
    before = json.dumps(json.loads(doc_block("vector:event"))).encode()
    # seq 42 alone: the watermark waits for 1..41
    outcomes, _ = store.process_batch([(topic, before)], registry)
    assert outcomes[0].status == "accepted"
    store.execute("INSERT INTO skipped (device, first, last, last_hash, declared_by) "
                  "VALUES ('station-01', 1, 41, NULL, 0)")   # as an earlier resume would
    outcomes, _ = store.process_batch([(topic, json.dumps(resumed).encode())], registry)
    assert outcomes[0].status == "accepted", outcomes[0].reason
    assert store.watermark("station-01") == (1066, doc_block("vector:resumed-hash").strip())
    # (the vector's seq 42 is a purchase priced with a table this bank does not hold: it is
    # stored, and held from payment with its alert)
    assert sorted(a["kind"] for a in store.open_alerts("station-01")) == [
        "chain.resumed", "purchase.mismatch"]
    store.close()


def test_seal_reproduces_the_vector():
    doc = json.loads(doc_block("vector:event"))
    sealed = events.seal(
        Draft(doc["type"], doc["priority"], doc["body"]), device=doc["device"], seq=doc["seq"],
        prev=doc["prev"], signer=vector_signer(),
        context=Context(doc["boot"], doc["ts"], doc["clock_synced"], doc["mono_ms"]))
    assert sealed == doc


@pytest.mark.parametrize("signer_cls", [Ed25519Signer, ES256Signer])
def test_sealed_events_match_the_schema_and_verify(signer_cls):
    signer = signer_cls.generate()
    event = events.seal(Draft("test.thing", "alert", {"n": 1, "weight_g": "123"}),
                        device="dev-a", seq=1, prev=events.GENESIS_PREV, signer=signer)
    jsonschema.validate(event, json.loads(doc_block("schema:event")))
    verifier = Verifier.from_pem(signer.public_key_pem())
    events.verify(event, verifier)
    if signer_cls is ES256Signer:
        from agent.contract.signing import b64url_decode
        assert len(b64url_decode(event["sig"])) == 64


def test_every_field_is_covered_by_the_signature():
    signer = Ed25519Signer.generate()
    verifier = Verifier.from_pem(signer.public_key_pem())
    event = events.seal(Draft("test.thing", "money", {"amount": "10.00"}), device="dev-a",
                        seq=7, prev="a" * 64, signer=signer)
    changes = {"seq": 8, "prev": "b" * 64, "type": "test.other", "priority": "telemetry",
               "ts": "2020-01-01T00:00:00.000000Z", "clock_synced": not event["clock_synced"],
               "mono_ms": event["mono_ms"] + 1, "body": {"amount": "10.01"},
               "device": "dev-b", "boot": "00000000-0000-0000-0000-000000000000"}
    for field, value in changes.items():
        with pytest.raises(SignatureError):
            events.verify({**event, field: value}, verifier)


def test_wrong_key_and_wrong_alg_are_refused():
    a, b = Ed25519Signer.generate(), ES256Signer.generate()
    event = events.seal(Draft("test.thing", "money", {}), device="d", seq=1,
                        prev=events.GENESIS_PREV, signer=a)
    with pytest.raises(SignatureError):
        events.verify(event, Verifier.from_pem(Ed25519Signer.generate().public_key_pem()))
    with pytest.raises(SignatureError):
        events.verify(event, Verifier.from_pem(b.public_key_pem()))


@pytest.mark.parametrize("body", [
    {"weight": 1.5}, {"amount": Decimal("1.50")}, {"big": 2**53}, {"nested": [{"x": 0.1}]},
])
def test_inexact_numbers_are_refused(body):
    with pytest.raises(EventFormatError):
        Draft("test.thing", "money", body)


@pytest.mark.parametrize("type_,priority", [("Purchase", "money"), ("purchase", "money"),
                                            ("a.b", "urgent")])
def test_bad_type_or_priority_is_refused(type_, priority):
    with pytest.raises(EventFormatError):
        Draft(type_, priority, {})


def test_shape_check_names_the_field():
    signer = Ed25519Signer.generate()
    event = events.seal(Draft("test.thing", "money", {}), device="dev-a", seq=1,
                        prev=events.GENESIS_PREV, signer=signer)
    with pytest.raises(EventFormatError, match="seq"):
        events.check_shape({**event, "seq": "1"})
    with pytest.raises(EventFormatError, match="unexpected"):
        events.check_shape({**event, "extra": 1})


def test_signed_envelope_without_sig_is_refused():
    signer = Ed25519Signer.generate()
    with pytest.raises(SignatureError):
        verify_object({"a": 1}, Verifier.from_pem(signer.public_key_pem()))


def test_fast_sealing_matches_generic_canonical_json():
    signer = Ed25519Signer.generate()
    body = {"z": "1", "a": [1, {"é": "ü", "b": None}], "emoji": "\U0001f41b", "n": -5}
    event, payload = events.seal_encoded(Draft("test.thing", "money", body), device="dev-a",
                                         seq=3, prev="c" * 64, signer=signer)
    assert payload == canonical(event)
    assert sign_object({k: v for k, v in event.items() if k != "sig"}, signer) == event


# Values as events carry them: any text (control characters, non-ASCII, astral and
# private-use characters whose UTF-16 order differs from their code point order), safe
# integers, booleans, null, nested lists and objects.
_ANY_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_KEYS = st.one_of(_ANY_TEXT, st.sampled_from(["a", "b", "\ue000", "\U0001f41b", "A\x00", "é"]))
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | _ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(_JSON)
def test_canonical_json_equals_the_rfc8785_reference(value):
    assert canonical(value) == rfc8785.dumps(value)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_KEYS, _JSON, max_size=5), st.integers(1, 2**53 - 1))
def test_sealed_bytes_equal_the_rfc8785_reference(body, seq):
    signer = Ed25519Signer.generate()
    event, payload = events.seal_encoded(Draft("test.thing", "money", body), device="dev-a",
                                         seq=seq, prev="c" * 64, signer=signer)
    assert payload == rfc8785.dumps(event)
    unsigned = rfc8785.dumps({k: v for k, v in event.items() if k != "sig"})
    Verifier.from_pem(signer.public_key_pem()).verify(
        "Ed25519", signer.kid, unsigned, b64url_decode(event["sig"]))


def test_sealing_refuses_what_canonical_json_cannot_carry():
    body = {"ok": "1"}
    draft = Draft("test.thing", "money", body)
    body["weight"] = 1.5  # changed after the draft was checked: sealing checks again
    with pytest.raises(EventFormatError, match="floats"):
        events.seal_encoded(draft, device="dev-a", seq=1, prev="c" * 64,
                            signer=Ed25519Signer.generate())
    with pytest.raises(EventFormatError):
        canonical({"lone": "\ud800"})


def test_event_timestamps_are_utc_with_microseconds():
    from datetime import datetime, timezone

    before = datetime.now(timezone.utc)
    event = events.seal(Draft("test.thing", "money", {}), device="dev-a", seq=1,
                        prev="c" * 64, signer=Ed25519Signer.generate())
    after = datetime.now(timezone.utc)
    assert events.TS_RE.match(event["ts"])
    assert before <= datetime.strptime(event["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=timezone.utc) <= after


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2048))
def test_libsodium_signatures_equal_openssl_signatures(message):
    signer = Ed25519Signer.generate()
    sig = signer.sign(message)
    assert sig == signer._key.sign(message)  # Ed25519 is deterministic: the same bytes
    Verifier.from_pem(signer.public_key_pem()).verify("Ed25519", signer.kid, message, sig)


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=512), st.integers(min_value=0, max_value=63))
def test_libsodium_verification_agrees_with_openssl(message, flip):
    """Ed25519 is verified through libsodium; OpenSSL must agree on good and tampered
    signatures, and a verifier made from the raw key acts as one made from the PEM file."""
    signer = Ed25519Signer.generate()
    sig = signer.sign(message)
    from_pem = Verifier.from_pem(signer.public_key_pem())
    from_raw = Verifier.from_raw_ed25519(from_pem.raw, from_pem.kid)
    for verifier in (from_pem, from_raw):
        verifier.verify("Ed25519", signer.kid, message, sig)
    bad = bytearray(sig)
    bad[flip] ^= 0x01
    with pytest.raises(InvalidSignature):  # OpenSSL's view of the tampered signature
        signer._key.public_key().verify(bytes(bad), message)
    for verifier in (from_pem, from_raw):
        with pytest.raises(SignatureError):
            verifier.verify("Ed25519", signer.kid, message, bytes(bad))
        with pytest.raises(SignatureError):
            verifier.verify("Ed25519", signer.kid, message, sig[:63])
        with pytest.raises(SignatureError):
            verifier.verify("Ed25519", signer.kid, message + b"x", sig)


def test_a_raw_ed25519_key_must_be_32_bytes():
    from agent.errors import KeyFileError

    with pytest.raises(KeyFileError, match="32 bytes"):
        Verifier.from_raw_ed25519(b"\x00" * 31, "00" * 32)
