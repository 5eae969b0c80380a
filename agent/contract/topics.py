"""MQTT topic names and device ids: a contract with the bank's integrators (docs/events.md)."""

import re

PREFIX = "cocoon/v1"
#: A device id: one topic segment, lowercase letters, digits and dashes.
DEVICE_ID_RE = re.compile(r"^[a-z0-9-]+$")


def events(device: str) -> str:
    return f"{PREFIX}/{device}/events"


def acks(device: str) -> str:
    return f"{PREFIX}/{device}/acks"


def commands(device: str) -> str:
    return f"{PREFIX}/{device}/commands"


def device_of(topic: str) -> str | None:
    """The device segment of a `cocoon/v1/{device}/...` topic, or None."""
    parts = topic.split("/")
    if len(parts) == 4 and f"{parts[0]}/{parts[1]}" == PREFIX and parts[2]:
        return parts[2]
    return None
