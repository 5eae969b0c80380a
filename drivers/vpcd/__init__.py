"""Virtual smart cards behind a private pcscd, for the tests and the demo station.

Only the cards are simulated: pcscd, Debian's vpcd reader driver, libpcsclite and pyscard are
the real ones, so the code that reads them is the production code path. Nothing here imports
pyscard at module level (see pcscd.py on PCSCLITE_CSOCK_NAME).

- `card`: VirtualCard, a card that answers APDUs, plugged into a vpcd reader slot;
- `cpu_card`: CpuFarmerCard, the farmer (and staff) application's files on a CPU card;
- `pcscd`: Pcscd, a private pcscd with vpcd readers on free loopback ports.
"""
