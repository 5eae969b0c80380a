"""MqttLink against the real broker: one owning thread, TCP_NODELAY, backoff with jitter."""

import random
import socket
import threading

from agent.link.mqtt import Backoff, LinkSettings, MqttLink
from tests.support.waiting import wait_for


class Recorder:
    def __init__(self):
        self.connected = threading.Event()
        self.threads = set()
        self.messages = []
        self.pubacks = []
        self.sent = False

    def _note(self):
        self.threads.add(threading.current_thread().name)

    def on_connected(self, link):
        self._note()
        link.subscribe("cocoon/v1/dev-a/acks")
        self.connected.set()

    def on_disconnected(self, link, reason):
        self._note()

    def on_message(self, link, topic, payload, retain):
        self._note()
        self.messages.append((topic, payload))

    def on_puback(self, link, mid, code):
        self._note()
        self.pubacks.append(code)

    def on_tick(self, link):
        self._note()
        if self.connected.is_set() and not self.sent:
            self.sent = True
            link.publish("cocoon/v1/dev-a/events", b"{}", qos=1)
            link.publish("cocoon/v1/dev-b/events", b"{}", qos=1)


def settings(pki, broker, cn="dev-a", **kw):
    pair = pki.clients[cn]
    return LinkSettings(client_id=cn, host=broker.host, port=kw.pop("port", broker.port),
                        ca_file=pki.ca.cert_file, cert_file=pair.cert_file,
                        key_file=pair.key_file, **kw)


def run_link(link):
    stop = threading.Event()
    thread = threading.Thread(target=link.run, args=(stop,), name="link-owner", daemon=True)
    thread.start()
    return stop, thread


def test_callbacks_run_in_the_owning_thread_and_acl_refusals_are_visible(pki, broker):
    rec = Recorder()
    link = MqttLink(settings(pki, broker), rec)
    stop, thread = run_link(link)
    try:
        wait_for(lambda: len(rec.pubacks) == 2, 10, what="two PUBACKs")
        ok, refused = sorted(rec.pubacks)
        assert ok < 0x80  # own topic: success (16 = "no matching subscribers" is a success)
        assert refused == 135  # another device's topic: not authorized
        assert link.status.refused_publishes == 1
        sock = link._client.socket()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        stop.set()
        thread.join(10)
    assert rec.threads == {"link-owner"}


def test_unreachable_broker_backs_off_without_hanging(pki, broker):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    rec = Recorder()
    link = MqttLink(settings(pki, broker, port=free_port, reconnect_min_s=0.01,
                             reconnect_max_s=0.05), rec)
    stop, thread = run_link(link)
    try:
        wait_for(lambda: "failed" in link.status.last_error, 5, what="connect failure")
        assert not link.status.connected and not rec.connected.is_set()
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_backoff_is_exponential_with_full_jitter():
    backoff = Backoff(0.5, 8.0, random.Random(1))
    ceilings = [0.5, 1, 2, 4, 8, 8, 8]
    delays = [backoff.next_delay() for _ in ceilings]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len({round(d, 6) for d in delays}) == len(delays)  # jittered, not a fixed ladder
    many = [Backoff(1, 1, random.Random(i)).next_delay() for i in range(200)]
    assert min(many) < 0.1 and max(many) > 0.9  # full jitter spans the whole range
    backoff.reset()
    assert backoff.next_delay() <= 0.5
