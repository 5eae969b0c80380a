"""Publishing one signed command to a device (QoS 1), for the bank's command-line tools:
`send-command`, and `mark-paid`, which sends the station its `payment.confirmed`."""

from __future__ import annotations

import dataclasses
import json
import threading

from agent.contract import topics
from agent.contract.errors import CocoonError


class CommandNotDelivered(CocoonError):
    """The broker did not take the command (no connection, or it refused it)."""

    exit_code = 1


def publish_command(mqtt_config, command: dict) -> None:
    """Publish `command` (made by agent.contract.commands.make_command) to its device's
    commands topic with an operator's [mqtt] settings; return once the broker has it."""
    from agent.link.mqtt import LinkSettings, MqttLink

    payload = json.dumps(command).encode()
    done = threading.Event()
    result = {}

    class OneShot:
        mid = None

        def on_connected(self, link):
            self.mid = link.publish(topics.commands(command["device"]), payload, qos=1)

        def on_disconnected(self, link, reason):
            pass

        def on_message(self, *args):
            pass

        def on_puback(self, link, mid, reason_code):
            if mid == self.mid:
                result["code"] = reason_code
                done.set()

        def on_tick(self, link):
            pass

    settings = dataclasses.replace(
        LinkSettings.from_config(f"cmd-{command['id'][:12]}", mqtt_config),
        clean_start=True, session_expiry_s=0, reconnect_max_s=2.0)
    link = MqttLink(settings, OneShot())
    watchdog = threading.Timer(mqtt_config.connack_timeout_s + 10, done.set)
    watchdog.start()
    link_thread = threading.Thread(target=link.run, args=(done,), daemon=True)
    link_thread.start()
    link_thread.join()
    watchdog.cancel()
    if "code" not in result:
        raise CommandNotDelivered(
            f"command not delivered: {link.status.last_error or 'timeout'}")
    if result["code"] >= 0x80:
        raise CommandNotDelivered(f"broker refused the command (reason code {result['code']})")
