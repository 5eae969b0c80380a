"""The one exception root of the drivers.

Drivers know no workflow and import nothing of the agent, so their errors cannot derive from
the agent's root. Every error a driver raises on purpose derives from `DriverError` instead
(`PcscError`, `ScaleError`, `TagError`, `ClimateError`, `PrinterError`, `SignalError`), and the
agent treats `agent.errors.EXPECTED` (its own root and this one) as the faults it reports in
one line rather than as a traceback.
"""


class DriverError(Exception):
    """Root of every error a driver raises on purpose."""
