"""The only module that imports paho-mqtt.

paho's client owns sockets, TLS, packet state and callbacks at once, and is fragile across
threads. Here one thread owns it: `MqttLink.run()` connects, loops, and calls a handler's
methods from that same thread, and the handler publishes only from inside those calls. MQTT 5 is
used so that the broker's PUBACK reason codes reveal ACL refusals, TLS with a client certificate
and a pinned CA, TCP_NODELAY for latency, and exponential reconnect backoff with full jitter.
A connection that gets no CONNACK in time (a refused client certificate looks like that: the TLS
handshake "succeeds", then the broker closes) is reported as an authentication failure.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from agent.link.common import Backoff, LinkSettings, LinkStatus

__all__ = ["Backoff", "LinkHandler", "LinkSettings", "LinkStatus", "MqttLink"]

log = logging.getLogger(__name__)

NOT_AUTHORIZED = 135


class LinkHandler(Protocol):
    """Called from the link's thread only."""

    def on_connected(self, link: MqttLink) -> None: ...

    def on_disconnected(self, link: MqttLink, reason: str) -> None: ...

    def on_message(self, link: MqttLink, topic: str, payload: bytes, retain: bool) -> None: ...

    def on_puback(self, link: MqttLink, mid: int, reason_code: int) -> None: ...

    def on_tick(self, link: MqttLink) -> None: ...


def _certificate_refused(exc: BaseException) -> bool:
    """True for TLS failures about certificates (either side's), not for network trouble."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return True
    reason = str(getattr(exc, "reason", "") or "") if isinstance(exc, ssl.SSLError) else ""
    return "ALERT" in reason and any(
        word in reason for word in ("CERTIFICATE", "UNKNOWN_CA", "ACCESS_DENIED"))


class MqttLink:
    """One MQTT 5 connection over TLS, kept up by `run`.

    `acks_later(topic)` names the topics whose messages the handler acknowledges itself, once
    it has made them durable: for those, paho's automatic PUBACK is off, the handler gets the
    message's acknowledgement from `defer_ack()` (in `on_message`) and calls it when done, and
    a message it never acknowledges (its process died) is sent again by the broker on the
    next connection of the persistent session."""

    def __init__(self, settings: LinkSettings, handler: LinkHandler,
                 acks_later: Callable[[str], bool] | None = None):
        self.settings = settings
        self.handler = handler
        self._acks_later = acks_later
        self._message: tuple[int, int] | None = None   # (mid, qos) in on_message
        self._generation = 0                           # one per connection
        self.status = LinkStatus()
        self._backoff = Backoff(settings.reconnect_min_s, settings.reconnect_max_s)
        self._client: paho.Client | None = None
        self._connack: tuple[bool, str] | None = None
        self.loops = 0  # iterations of the owning loop: the watchdog's sign of progress

    # -- client construction ------------------------------------------------------------

    def _make_client(self) -> paho.Client:
        s = self.settings
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            protocol=paho.MQTTv5,
        )
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(s.ca_file))
        context.load_cert_chain(str(s.cert_file), str(s.key_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        client.tls_set_context(context)
        client.max_inflight_messages_set(s.inflight)
        client.max_queued_messages_set(0)
        client.connect_timeout = max(1.0, s.connack_timeout_s)
        client.suppress_exceptions = False
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_socket_open = self._on_socket_open
        if self._acks_later is not None:
            client.manual_ack_set(True)
        return client

    # -- paho callbacks (run inside client.loop(), i.e. in our thread) ------------------

    def _on_socket_open(self, client, userdata, sock) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            log.debug("TCP_NODELAY not supported on this socket")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        ok = not reason_code.is_failure
        self._connack = (ok, str(reason_code))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.status.connected:
            self.status.connected = False
            self.status.last_error = f"disconnected: {reason_code}"
            log.warning("mqtt link to %s:%s lost (%s)", self.settings.host, self.settings.port,
                        reason_code)
            self.handler.on_disconnected(self, str(reason_code))

    def _on_message(self, client, userdata, message) -> None:
        later = self._acks_later is not None and self._acks_later(message.topic)
        self._message = (message.mid, message.qos) if later else None
        try:
            self.handler.on_message(self, message.topic, bytes(message.payload),
                                    bool(message.retain))
        finally:
            self._message = None
        if self._acks_later is not None and not later and message.qos > 0:
            client.ack(message.mid, message.qos)

    def defer_ack(self) -> Callable[[], None]:
        """In `on_message`, for a topic acknowledged later: the function that acknowledges
        this message (from any thread). On a later connection it does nothing: the broker
        sends the message again, and the handler's record of it recognises the copy."""
        mid, qos = self._message or (None, 0)
        client, generation = self._client, self._generation

        def ack() -> None:
            if mid is None or qos == 0 or generation != self._generation:
                return
            try:
                client.ack(mid, qos)
            except Exception:  # the connection is going: the broker sends it again
                log.debug("mqtt: late acknowledgement of message %s failed", mid, exc_info=True)
        return ack

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        code = int(getattr(reason_code, "value", reason_code) or 0)
        if code >= 0x80:
            self.status.refused_publishes += 1
        self.handler.on_puback(self, mid, code)

    # -- used by the handler (same thread) ----------------------------------------------

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> int:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"publish failed: {paho.error_string(info.rc)}")
        return info.mid

    def subscribe(self, topic: str, qos: int = 1) -> None:
        rc, _ = self._client.subscribe(topic, qos=qos)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ConnectionError(f"subscribe to {topic} failed: {paho.error_string(rc)}")

    def pump(self, timeout: float = 0.01) -> bool:
        """From the handler's `on_tick`: one round of the connection's traffic, as `run` does
        between ticks, for a handler that must see a PUBACK before it goes on (the handler's
        callbacks are called as usual). False when the connection is down."""
        if not self.status.connected or self._client is None:
            return False
        rc = self._client.loop(timeout=timeout)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS and self.status.connected:
            self._on_disconnect(self._client, None, None, paho.error_string(rc), None)
        return self.status.connected

    # -- the owning loop ----------------------------------------------------------------

    def run(self, stop: threading.Event, tick_s: float = 0.05) -> None:
        """Connect, keep connected and pump the client until `stop` is set."""
        while not stop.is_set():
            self.loops += 1
            if not self.status.connected and not self._connect_once(stop):
                delay = self._backoff.next_delay()
                log.info("mqtt reconnect in %.2f s", delay)
                if self._sleep(stop, delay):
                    break
                continue
            rc = self._client.loop(timeout=tick_s)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS and self.status.connected:
                self._on_disconnect(self._client, None, None, paho.error_string(rc), None)
            try:
                self.handler.on_tick(self)
            except ConnectionError as exc:
                log.warning("mqtt link: %s", exc)
        self._close()

    def _sleep(self, stop: threading.Event, delay: float) -> bool:
        """Wait out a backoff in short slices, so that `loops` shows the thread is alive."""
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            if stop.wait(min(left, 1.0)):
                return True
            self.loops += 1
        return stop.is_set()

    def _connect_once(self, stop: threading.Event) -> bool:
        s = self.settings
        self._connack = None
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = s.session_expiry_s
        # A fresh client per connection: paho would otherwise replay its own copy of messages
        # that were in flight; the outbox decides what is sent again. The broker keeps the
        # session (subscriptions and queued commands) across reconnects.
        self._client = self._make_client()
        self._generation += 1
        try:
            self._client.connect(s.host, s.port, keepalive=s.keepalive_s,
                                 clean_start=s.clean_start, properties=props)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.status.last_error = f"connect to {s.host}:{s.port} failed: {exc}"
            if _certificate_refused(exc):
                # Over TLS 1.2 a refused client certificate is a handshake alert, not a
                # missing CONNACK; a server certificate we cannot verify is the same problem.
                self.status.auth_failed = True
                self.status.last_error += "; check [mqtt] cert_file, key_file and ca_file"
            log.warning("mqtt %s", self.status.last_error)
            return False
        deadline = time.monotonic() + s.connack_timeout_s
        while self._connack is None and time.monotonic() < deadline and not stop.is_set():
            rc = self._client.loop(timeout=0.05)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        if self._connack is None or not self._connack[0]:
            reason = self._connack[1] if self._connack else "no CONNACK"
            self.status.auth_failed = True
            self.status.last_error = (
                f"broker {s.host}:{s.port} did not accept the connection ({reason}): "
                "authentication failed, or the client certificate was refused; check "
                "[mqtt] cert_file, key_file and ca_file"
            )
            log.error("mqtt %s", self.status.last_error)
            self._close()
            return False
        self.status.connected = True
        self.status.auth_failed = False
        self.status.connects += 1
        self.status.last_error = ""
        self._backoff.reset()
        log.info("mqtt connected to %s:%s as %s", s.host, s.port, s.client_id)
        self.handler.on_connected(self)
        return True

    def _close(self) -> None:
        if self._client is None:
            return
        self.status.connected = False  # our own disconnect is not a lost link
        try:
            self._client.disconnect()
        except Exception:
            pass
        self._client.loop(timeout=0.01)
        sock = self._client.socket()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass
