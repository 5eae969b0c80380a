"""The Pi's side of the serial link to a field box's co-processor, and the keeper of its
firmware. The bridge offers the co-processor's inputs through the same driver interfaces as
directly attached devices.

    frames    COBS + CRC-16/IBM-3740 frames, pure        messages  the message table
    link      ACKs, retransmission, SYNC handshake       bridge    connection loop, subscribers
    readers   tag, scale, climate and input adapters     image     signed image format
    update    chunked, resumable A/B update              simulator the box in Python, with faults

docs/firmware-protocol.md is the contract, byte by byte.
"""
