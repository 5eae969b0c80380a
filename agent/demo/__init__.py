"""Scaffolding for the demos and the tests, never used on a fielded device: a local Mosquitto, a
throwaway certificate authority, a local sandbox of a whole installation, the simulated bench
and scripted clerk, and the demo mains behind `scripts/demo` and `scripts/demo-warehouse`.
"""
