"""MQTT test helpers (tests only: production code must not use loop_start)."""

from __future__ import annotations

import ssl
import threading
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

CONNECT_TIMEOUT = 5.0


def mqtt_client(pki, broker, cn, *, client_id=None, timeout=CONNECT_TIMEOUT, **kw):
    """Return a paho-mqtt 2.x MQTT v5 client connected to *broker* as *cn*.

    The client authenticates with the certificate ``pki.clients[cn]``, runs
    its network loop in a background thread (``loop_start``) and has already
    received a successful CONNACK.  Extra keyword arguments go to
    ``mqtt.Client``.  The caller must ``loop_stop()`` / ``disconnect()`` it.
    """
    pair = pki.clients[cn]
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or f"{cn}-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
        **kw,
    )
    client.tls_set(
        ca_certs=str(pki.ca.cert_file),
        certfile=str(pair.cert_file),
        keyfile=str(pair.key_file),
        cert_reqs=ssl.CERT_REQUIRED,
    )
    connected = threading.Event()
    result = {}

    def on_connect(client, userdata, flags, reason_code, properties):
        result["rc"] = reason_code
        connected.set()

    client.on_connect = on_connect
    client.connect(broker.host, broker.port, keepalive=30)
    client.loop_start()
    if not connected.wait(timeout):
        client.loop_stop()
        client.disconnect()
        raise TimeoutError(f"no CONNACK for {cn!r} within {timeout}s")
    client.on_connect = None
    rc = result["rc"]
    if rc.is_failure:
        client.loop_stop()
        client.disconnect()
        raise ConnectionError(f"{cn!r} refused by broker: {rc}")
    return client
