"""MQTT topic names: a contract with the bank's integrators (docs/events.md)."""

PREFIX = "cocoon/v1"


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
