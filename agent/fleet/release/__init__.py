"""Signed releases of the agent: where they live on a device, the bundle format, what healthy
means after a switch, and the updater that installs, switches and rolls back.
"""
