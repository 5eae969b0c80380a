"""The supervised warehouse: the bank's eyes on pledged cocoons (see docs/warehouse.md).

Pure state machines (presence, custody, climate, doors) turn readings into event drafts; the
service wires tag readers, GPIO and the climate sensor to them and their drafts to the outbox.
"""
