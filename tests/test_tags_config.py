"""Tag readers in the configuration: [[warehouse.readers]] entries are checked when the file is
parsed (protocol, port form, keys), every error naming the file, the entry and the key; a
leftover [tags] section is refused with where the readers go instead."""

from __future__ import annotations

import pytest

from agent.config import load_config
from agent.errors import ConfigError
from agent.warehouse.service import reader_for
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


def load(tmp_path, text: str):
    path = tmp_path / "agent.toml"
    path.write_text(BASE + text)
    return load_config(path)


def test_readers_parsed_and_opened(tmp_path):
    cfg = load(tmp_path, """
[warehouse]
[[warehouse.readers]]
name = "dock"
port = "/dev/ttyUSB0"
antennas = [3]
silence_s = 5
[[warehouse.readers]]
name = "hall"
port = "llrp://192.168.1.50:5084"
protocol = "llrp"
antennas = [1, 2]
""")
    dock, hall = cfg.section("warehouse").readers
    assert (dock.protocol, dock.antennas, dock.silence_s) == ("bb7e", (3,), 5.0)
    assert (hall.protocol, hall.antennas, hall.silence_s) == ("llrp", (1, 2), None)
    reader = reader_for(dock)
    assert isinstance(reader, BB7EReader) and reader.antenna == 3 and reader.name == "dock"
    llrp = reader_for(hall)
    assert isinstance(llrp, LLRPReader) and (llrp.host, llrp.port) == ("192.168.1.50", 5084)
    assert llrp.antennas == [1, 2]


@pytest.mark.parametrize("body, words", [
    ('name = "a"\n', "port is missing"),
    ('port = "/dev/x"\nprotocol = "rs485"\n',
     "[warehouse.readers[0]] protocol: expected one of bb7e, llrp, coproc, got 'rs485'"),
    ('port = "/dev/x"\nprotocol = "LLRP"\n', "protocol: expected one of bb7e, llrp, coproc"),
    ('port = "10.0.0.5"\nprotocol = "llrp"\n',
     "port: expected llrp://HOST[:5084] for an llrp reader, got '10.0.0.5'"),
    ('port = "/dev/x"\nantennas = [0]\n', "antennas: expected a list"),
    ('port = "/dev/x"\nsilence = 3\n',
     "[warehouse.readers[0]] silence: unknown key; did you mean silence_s?"),
])
def test_reader_errors_name_the_file_the_entry_and_the_key(tmp_path, body, words):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "[warehouse]\n[[warehouse.readers]]\n" + body)
    assert words in str(err.value) and "agent.toml" in str(err.value)


def test_a_leftover_tags_section_says_where_readers_go(tmp_path):
    with pytest.raises(ConfigError, match=r"\[tags\] is not read .*\[\[warehouse.readers\]\]"):
        load(tmp_path, '[tags]\n[[tags.readers]]\nname = "dock"\nport = "/dev/ttyUSB0"\n')
