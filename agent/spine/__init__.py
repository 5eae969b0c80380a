"""The event spine on the device: the durable outbox and its schema migrations, start-up
recovery and quarantine, and the dispatcher of signed commands.

Every event the agent records passes through here and stays until the bank acknowledges it.
"""
