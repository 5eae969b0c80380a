"""Packaging for cocoon-agent: the edge agent, its drivers and the reference bank-side ingest.

Two roles share one distribution. `install_requires` holds what both need (the wire contract,
the MQTT link, the command lines); the device's hardware libraries are the `device` extra, so
that a bank's server (`pip install .[ingest]`) gets none of them. A device installs
`.[device]`: scripts/bootstrap, the Debian package and the release updater name it.
"""

import os
from pathlib import Path

from setuptools import find_packages, setup

SHARED = [
    "paho-mqtt>=2.1,<3",
    "sqlite-utils>=3.36",
    # 43 is the first with SM4 and with 3DES under hazmat.decrepit (the PSAM scheme of the
    # CPU cards, drivers/pcsc/symmetric.py)
    "cryptography>=43",
    "pynacl>=1.5",  # Ed25519 signing of events through libsodium, outside the GIL
    "rfc8785>=0.1.4",
    "click>=8.1",
    "tomlkit>=0.12",  # provision edits agent.toml keeping the technician's comments
    "msgspec>=0.18",  # the configuration files, decoded into strict typed structs
    "prometheus-client>=0.17",  # the optional [metrics] endpoint on localhost
    # The tz database for zoneinfo ([station] timezone: voucher days, today's sales), so
    # the station's local day does not depend on the system's tzdata being installed.
    "tzdata>=2024.1",
]

# The device's hardware: what drivers/ and firmware_bridge/ talk to.
DEVICE = [
    "pyserial>=3.5",
    "python-escpos>=3.1",
    "gpiozero>=2.0",
    "smbus2>=0.4",  # the warehouse's SHT3x climate sensor on I2C
    "sllurp>=3.0",  # LLRP tag readers (imported only for llrp:// readers)
    "cobs>=1.2",  # framing of the field box's co-processor link (firmware_bridge)
    "crc>=8.0",  # CRC-16/IBM-3740 of those frames and of firmware chunks
    # Farmer and staff cards over PC/SC. No Linux wheel on PyPI: it builds from source and
    # needs gcc, the Python headers and libpcsclite-dev (scripts/bootstrap installs them).
    "pyscard>=2.0",
    # The clerk's screen (agent/screen): waitress serves it from a few threads of the agent
    # (+1.5 MiB RSS measured, against +6 for werkzeug, +11 for uvicorn with starlette and +17
    # for aiohttp); Babel formats its numbers and dates and reads its gettext catalogs.
    "waitress>=3.0",
    "babel>=2.12",
    # Remote screens over TLS (agent/screen/remote.py, only with [screen] listen on the
    # network): waitress has no TLS, cheroot's built-in adapter uses the standard ssl module.
    "cheroot>=10",
    # Pin backends exist only on a Raspberry Pi: RPi.GPIO for older models, lgpio for
    # the Pi 5 (where RPi.GPIO fails). 64-bit Raspberry Pi OS reports aarch64, 32-bit
    # armv7l (Pi 2 to 5) or armv6l (Pi 1, Zero, Zero W). x86 test machines use gpiozero's
    # mock pins. tests/test_setup_markers.py checks these markers.
    "RPi.GPIO>=0.7; platform_machine == 'aarch64' or platform_machine == 'armv7l'"
    " or platform_machine == 'armv6l'",
    "lgpio>=0.2; platform_machine == 'aarch64' or platform_machine == 'armv7l'"
    " or platform_machine == 'armv6l'",
]


def fielded_device() -> bool:
    """True where this release is built on a device that an agent from before the `device`
    extra is updating: its updater installs the release with a plain `pip install`, naming no
    extra, and the new release must still get the hardware libraries. Such a device has its
    configuration under /etc/cocoon-agent. COCOON_AGENT_ROLE=device or ingest says it outright.
    """
    role = os.environ.get("COCOON_AGENT_ROLE", "")
    if role:
        return role == "device"
    return Path("/etc/cocoon-agent/agent.toml").is_file()

setup(
    name="cocoon-agent",
    version="0.1.0",
    description="Edge agent for silkworm-cocoon purchase stations and bank-supervised warehouses",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["agent*", "drivers*", "firmware_bridge*", "ingest*"]),
    # The list of legally relevant files that `cocoon-agent --version` identifies; the clerk's
    # screen's pages and its gettext catalogs (compiled when the screen starts).
    package_data={"agent.contract": ["legal_manifest.txt"],
                  "agent.screen": ["static/*", "locale/*/LC_MESSAGES/*.po", "babel.cfg"]},
    install_requires=SHARED + (DEVICE if fielded_device() else []),
    extras_require={
        "device": DEVICE,
        # The bank's side: psycopg 3 for a PostgreSQL store ([store] url in ingest.toml), which
        # several workers share; without a url the ingest keeps its SQLite file and needs none.
        "ingest": ["psycopg[binary]>=3.1"],
        # Event signing with a key on a PKCS#11 token (secure element, TPM):
        # agent/contract/pkcs11.py
        "pkcs11": ["python-pkcs11>=0.10"],
        "test": [
            *DEVICE,  # the tests drive the drivers against real parts
            "python-pkcs11>=0.10",  # the token signer's tests, against SoftHSM2
            "pytest>=8",
            "pytest-timeout>=2.2",
            "apsw>=3.45",
            "hypothesis>=6.90",
            "jsonschema>=4.17",
            "packaging>=23",  # tests/test_setup_markers.py evaluates install_requires markers
            "psycopg[binary]>=3.1",  # the ingest's store tests, run on SQLite and PostgreSQL
            "gmssl>=3.2",  # an independent SM4, to cross-check the card keys' diversification
            # The screen's tests drive Debian's chromium (no browser download) by touch.
            "playwright>=1.40",
        ],
    },
    entry_points={
        "console_scripts": [
            "cocoon-agent=agent.cli.main:main",
            "cocoon-ingest=ingest.cli:main",
        ]
    },
)
