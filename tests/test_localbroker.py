"""agent.demo.localbroker + agent.demo.devpki against a real Mosquitto process."""

from __future__ import annotations

import os
import ssl
import stat
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from agent.demo.devpki import LocalCA
from agent.demo.localbroker import LocalBroker, LocalBrokerError
from tests.support.mqtt import mqtt_client

TIMEOUT = 5.0
SHARED_EVENTS = "$share/ingest/cocoon/v1/+/events"
NOT_AUTHORIZED = 135


class Recorder:
    """Collects callbacks from a client's network thread; waits with deadlines."""

    def __init__(self, client: mqtt.Client) -> None:
        self._cond = threading.Condition()
        self.messages: list[tuple[str, bytes]] = []
        self.pubacks: dict[int, int] = {}
        self.subacks: dict[int, list[int]] = {}
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe

    def _record(self, fn) -> None:
        with self._cond:
            fn()
            self._cond.notify_all()

    def _on_message(self, client, userdata, msg) -> None:
        self._record(lambda: self.messages.append((msg.topic, msg.payload)))

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._record(lambda: self.pubacks.__setitem__(mid, reason_code.value))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._record(lambda: self.subacks.__setitem__(mid, [rc.value for rc in reason_codes]))

    def wait_for(self, predicate, what: str, timeout: float = TIMEOUT):
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def payloads(self) -> list[bytes]:
        with self._cond:
            return [p for _, p in self.messages]


def subscribe(client: mqtt.Client, rec: Recorder, topic: str) -> list[int]:
    result, mid = client.subscribe(topic, qos=1)
    assert result == mqtt.MQTT_ERR_SUCCESS
    rec.wait_for(lambda: mid in rec.subacks, f"SUBACK for {topic}")
    return rec.subacks[mid]


def publish(client: mqtt.Client, rec: Recorder, topic: str, payload: bytes) -> int:
    info = client.publish(topic, payload, qos=1)
    assert info.rc == mqtt.MQTT_ERR_SUCCESS
    rec.wait_for(lambda: info.mid in rec.pubacks, f"PUBACK for {topic}")
    return rec.pubacks[info.mid]


@pytest.fixture
def clients(pki, broker):
    """Factory: connected client + Recorder per CN; all closed at teardown."""
    opened = []

    def make(cn: str):
        client = mqtt_client(pki, broker, cn)
        rec = Recorder(client)
        opened.append(client)
        return client, rec

    yield make
    for client in opened:
        client.disconnect()
        client.loop_stop()


def test_device_publishes_own_events_to_shared_ingest(clients):
    ingest, ingest_rec = clients("ingest")
    assert subscribe(ingest, ingest_rec, SHARED_EVENTS) == [1]
    dev_a, dev_a_rec = clients("dev-a")

    assert publish(dev_a, dev_a_rec, "cocoon/v1/dev-a/events", b"hello") == 0

    ingest_rec.wait_for(lambda: ingest_rec.messages, "event at ingest")
    assert ingest_rec.messages == [("cocoon/v1/dev-a/events", b"hello")]


def test_device_cannot_publish_as_another_device(clients):
    ingest, ingest_rec = clients("ingest")
    subscribe(ingest, ingest_rec, SHARED_EVENTS)
    dev_a, dev_a_rec = clients("dev-a")

    assert publish(dev_a, dev_a_rec, "cocoon/v1/dev-b/events", b"forged") == NOT_AUTHORIZED
    # Ordering barrier: a later, allowed publish on the same connection.  Once
    # ingest has it, the forged one would have been delivered before it.
    assert publish(dev_a, dev_a_rec, "cocoon/v1/dev-a/events", b"sentinel") == 0
    ingest_rec.wait_for(lambda: b"sentinel" in ingest_rec.payloads(), "sentinel at ingest")
    assert ingest_rec.messages == [("cocoon/v1/dev-a/events", b"sentinel")]


def test_device_cannot_read_another_devices_commands(clients):
    dev_a, dev_a_rec = clients("dev-a")
    dev_b, dev_b_rec = clients("dev-b")
    operator, operator_rec = clients("operator")

    # Mosquitto 2.0.11 grants every SUBSCRIBE (see DEFAULT_ACL comment) and
    # filters at delivery; a stricter broker may refuse with >= 0x80.
    foreign = subscribe(dev_a, dev_a_rec, "cocoon/v1/dev-b/commands")
    assert len(foreign) == 1
    assert subscribe(dev_a, dev_a_rec, "cocoon/v1/dev-a/commands") == [1]
    assert subscribe(dev_b, dev_b_rec, "cocoon/v1/dev-b/commands") == [1]

    assert publish(operator, operator_rec, "cocoon/v1/dev-b/commands", b"for-b") == 0
    assert publish(operator, operator_rec, "cocoon/v1/dev-a/commands", b"for-a") == 0

    dev_b_rec.wait_for(lambda: dev_b_rec.messages, "command at dev-b")
    assert dev_b_rec.messages == [("cocoon/v1/dev-b/commands", b"for-b")]
    # Barrier: dev-a's own command was published after dev-b's.
    dev_a_rec.wait_for(lambda: dev_a_rec.messages, "command at dev-a")
    assert dev_a_rec.messages == [("cocoon/v1/dev-a/commands", b"for-a")]


def test_device_cannot_publish_commands(clients):
    dev_a, dev_a_rec = clients("dev-a")
    assert publish(dev_a, dev_a_rec, "cocoon/v1/dev-a/commands", b"x") == NOT_AUTHORIZED


def test_share_filter_acl_alone_delivers_nothing(pki, tmp_path):
    """Documents Mosquitto 2.0.11: `$share/...` ACL lines are inert (see DEFAULT_ACL)."""
    acl = (
        "pattern write cocoon/v1/%u/events\n"
        "pattern write cocoon/v1/%u/acks\n"
        "user ingest\n"
        "topic read $share/+/cocoon/v1/+/events\n"
        "topic read cocoon/v1/+/acks\n"
    )
    with LocalBroker(tmp_path, pki.ca.cert_file, pki.server.cert_file, pki.server.key_file,
                     acl=acl) as b:
        ingest, dev_a = mqtt_client(pki, b, "ingest"), mqtt_client(pki, b, "dev-a")
        try:
            ingest_rec, dev_a_rec = Recorder(ingest), Recorder(dev_a)
            assert subscribe(ingest, ingest_rec, SHARED_EVENTS) == [1]  # granted...
            assert subscribe(ingest, ingest_rec, "cocoon/v1/+/acks") == [1]
            assert publish(dev_a, dev_a_rec, "cocoon/v1/dev-a/events", b"event") < 0x80
            # Barrier: a readable message published afterwards on the same connection.
            assert publish(dev_a, dev_a_rec, "cocoon/v1/dev-a/acks", b"barrier") < 0x80
            ingest_rec.wait_for(lambda: ingest_rec.messages, "barrier at ingest")
            # ...but the event was never delivered.
            assert ingest_rec.messages == [("cocoon/v1/dev-a/acks", b"barrier")]
        finally:
            for c in (ingest, dev_a):
                c.disconnect()
                c.loop_stop()


def test_client_without_certificate_gets_no_connack(pki, broker):
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="no-cert", protocol=mqtt.MQTTv5)
    client.tls_set(ca_certs=str(pki.ca.cert_file), cert_reqs=ssl.CERT_REQUIRED)
    connacks = []
    client.on_connect = lambda *args: connacks.append(args)
    try:
        client.connect(broker.host, broker.port, keepalive=10)
    except (ssl.SSLError, OSError):
        pass  # TLS 1.2-style refusal during the handshake
    else:
        # TLS 1.3: the server checks the client certificate after the client
        # considers the handshake done, then drops the connection.
        deadline = time.monotonic() + TIMEOUT
        while client.loop(timeout=0.1) == mqtt.MQTT_ERR_SUCCESS:
            assert time.monotonic() < deadline, "connection without certificate stayed open"
    finally:
        client.disconnect()
    assert connacks == []


def test_stop_then_start_keeps_port(pki, broker):
    port = broker.port
    pid = broker.pid
    broker.stop()
    assert not broker.is_running
    broker.start()
    assert broker.is_running
    assert broker.port == port
    assert broker.pid != pid
    client = mqtt_client(pki, broker, "dev-a")
    client.disconnect()
    client.loop_stop()


def test_second_broker_on_busy_port_fails_clearly(pki, broker, tmp_path):
    other = LocalBroker(
        tmp_path / "other", pki.ca.cert_file, pki.server.cert_file, pki.server.key_file,
        port=broker.port,
    )
    with pytest.raises(LocalBrokerError, match="in use"):
        other.start()
    assert not other.is_running


def test_devpki_keys_private_and_reused(pki):
    for pair in [pki.server, *pki.clients.values()]:
        assert stat.S_IMODE(os.stat(pair.key_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(pki.ca.key_file).st_mode) == 0o600
    before = pki.clients["dev-a"].cert_file.read_bytes()
    again = LocalCA.create(pki.ca.directory)
    assert again.cert_file.read_bytes() == pki.ca.cert_file.read_bytes()
    assert again.issue("dev-a").cert_file.read_bytes() == before
