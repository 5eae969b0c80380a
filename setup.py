"""Packaging for cocoon-agent: the edge agent, its drivers and the reference bank-side ingest."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="cocoon-agent",
    version="0.1.0",
    description="Edge agent for silkworm-cocoon purchase stations and bank-supervised warehouses",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["agent*", "drivers*", "firmware_bridge*", "ingest*"]),
    install_requires=[
        "paho-mqtt>=2.1,<3",
        "sqlite-utils>=3.36",
        "cryptography>=41",
        "rfc8785>=0.1.4",
        "click>=8.1",
        "pyserial>=3.5",
        "python-escpos>=3.1",
    ],
    extras_require={
        # Hardware access. pyscard needs libpcsclite-dev to build; RPi.GPIO only imports on a Pi.
        "hardware": ["pyscard>=2.0", "RPi.GPIO>=0.7"],
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.2",
            "apsw>=3.45",
            "hypothesis>=6.90",
            "jsonschema>=4.17",
        ],
    },
    entry_points={
        "console_scripts": [
            "cocoon-agent=agent.cli:main",
            "cocoon-ingest=ingest.cli:main",
        ]
    },
)
