"""The [tags] section: readers parsed once, every error names file, reader and key."""

from __future__ import annotations

import pytest

from agent.config import load_config
from agent.errors import ConfigError
from drivers.tags.bb7e_reader import BB7EReader
from drivers.tags.llrp_reader import LLRPReader

BASE = """
[device]
id = "wh-01"
data_dir = "data"
[mqtt]
host = "127.0.0.1"
ca_file = "ca.pem"
cert_file = "dev.pem"
key_file = "dev.key"
[keys]
ingest_public_key_file = "keys/ingest.pem"
"""


def load(tmp_path, tags: str):
    path = tmp_path / "agent.toml"
    path.write_text(BASE + tags)
    return load_config(path)


def test_readers_parsed_and_opened(tmp_path):
    cfg = load(tmp_path, """
[tags]
[[tags.readers]]
name = "dock"
port = "/dev/ttyUSB0"
antennas = [3]
silence_s = 5
[[tags.readers]]
name = "hall"
port = "llrp://192.168.1.50:5084"
protocol = "llrp"
antennas = [1, 2]
""")
    tags = cfg.section("tags")
    dock, hall = tags.readers
    assert (dock.protocol, dock.antennas, dock.silence_s) == ("bb7e", (3,), 5.0)
    assert (hall.protocol, hall.antennas, hall.silence_s) == ("llrp", (1, 2), 10.0)
    reader = dock.open()
    assert isinstance(reader, BB7EReader) and reader.antenna == 3 and reader.name == "dock"
    llrp = tags.reader("hall").open()
    assert isinstance(llrp, LLRPReader) and (llrp.host, llrp.port) == ("192.168.1.50", 5084)
    assert llrp.antennas == [1, 2]


def test_no_section_means_none(tmp_path):
    assert load(tmp_path, "").section("tags") is None


@pytest.mark.parametrize("body, words", [
    ('[[tags.readers]]\nname = "a"\n', "port is missing"),
    ('[[tags.readers]]\nport = "/dev/x"\nprotocol = "rs485"\n', "one of bb7e, llrp"),
    ('[[tags.readers]]\nport = "/dev/x"\nantennas = [0]\n', "antennas must be a list"),
    ('[[tags.readers]]\nport = "/dev/x"\nantennas = []\n', "needs at least one antenna"),
    ('[[tags.readers]]\nport = "10.0.0.5"\nprotocol = "llrp"\n', "not an LLRP address"),
    ('[[tags.readers]]\nport = "/dev/x"\nsilence = 3\n', "unknown key(s) silence"),
    ('[[tags.readers]]\nname = "a"\nport = "/dev/x"\n[[tags.readers]]\nname = "a"\n'
     'port = "/dev/y"\n', "names must be unique"),
    ('readers = "dock"\n', "use [[tags.readers]]"),
])
def test_errors(tmp_path, body, words):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "[tags]\n" + body)
    assert words in str(err.value) and "agent.toml" in str(err.value)
