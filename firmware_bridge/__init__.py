"""The Pi's side of the serial link to a field box's co-processor, and the keeper of its
firmware. The bridge offers the co-processor's inputs through the same driver interfaces as
directly attached devices.
"""
