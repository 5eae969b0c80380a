"""Coverage-guided fuzzing of the co-processor link's decoders with atheris (libFuzzer).

    .venv/bin/pip install atheris
    .venv/bin/python bench/firmware_fuzz.py -atheris_runs=2000000 -max_len=600

Every input goes through the frame splitter (in two pieces), the frame decoder, the message
decoder and the image parser; anything but a value or our own error (FrameError,
MessageError, ImageError) is a crash that libFuzzer reports with the input that caused it.
docs/firmware-protocol.md records the executions a run reached.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports():
    from firmware_bridge import messages
    from firmware_bridge.errors import FrameError, ImageError, MessageError
    from firmware_bridge.frames import Splitter, decode_frame
    from firmware_bridge.image import parse_image


def one_input(data: bytes) -> None:
    cut = data[0] if data else 0
    splitter = Splitter()
    splitter.feed(data[:cut])
    splitter.feed(data[cut:])
    try:
        frame = decode_frame(data)
        messages.decode(frame.payload)
    except (FrameError, MessageError):
        pass
    try:
        messages.decode(data)
    except MessageError:
        pass
    try:
        parse_image(data)
    except ImageError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
