"""One exception root for the PC/SC drivers, with specific subclasses.

pyscard raises three unrelated exception roots and hides the reason in an `hresult` integer;
`drivers.pcsc.backend` turns them into these types, so that callers catch what they can act on:
a card pulled out (ask the farmer to insert it again), pcscd down (an operator's problem), or
a status word from the card (the application's business).
"""

from __future__ import annotations

from drivers.errors import DriverError


class PcscError(DriverError):
    """Root of every error the PC/SC drivers raise on purpose (a DriverError, so the command
    line reports it in one line, never as a traceback)."""


class ReaderServiceUnavailable(PcscError, ConnectionError):
    """pcscd is not running, or was restarted under an open context or connection.

    Every open connection is lost with it; open a new one once the service is back.
    """


class ReaderNotFound(PcscError, LookupError):
    """No reader's name contains the part asked for. `available` lists the readers seen."""

    def __init__(self, message: str, wanted: str = "", available: tuple[str, ...] = ()):
        super().__init__(message)
        self.wanted = wanted
        self.available = tuple(available)


class AmbiguousReader(ReaderNotFound):
    """Several readers' names contain the part asked for. `matches` lists them."""

    def __init__(self, message: str, wanted: str, available: tuple[str, ...],
                 matches: tuple[str, ...]):
        super().__init__(message, wanted, available)
        self.matches = tuple(matches)


class NoCard(PcscError):
    """A connection was asked for while the reader holds no card."""


class CardRemoved(PcscError):
    """The card (or its reader) went away during a session: pulled out, mid-command or between
    two commands. Whatever the card had done for the session (selected file, verified PIN) is
    lost; start over once a card is inserted again."""


class CardCommunicationError(PcscError, OSError):
    """A PC/SC call failed for a reason other than the above (a mute card, a reset by another
    application, a malformed answer). `hresult` is the PC/SC code when there is one."""

    def __init__(self, message: str, hresult: int | None = None):
        super().__init__(message)
        self.hresult = hresult


class ApduError(PcscError, ValueError):
    """A command APDU built by the caller is malformed (too short, inconsistent Lc)."""


class CardStatusError(PcscError):
    """The card answered a command with a status word other than 9000.

    `sw1`, `sw2` and `sw` hold the status word, `header` the command's CLA INS P1 P2 (never its
    data, which may be a PIN) and `response` the whole `Response`.
    """

    meaning = "error"

    def __init__(self, header: bytes, response):
        self.header = bytes(header)
        self.response = response
        self.sw1, self.sw2, self.sw = response.sw1, response.sw2, response.sw
        super().__init__(f"card answered {self.sw:04X} ({self.describe()}) to command "
                         f"{self.header.hex(' ').upper()}")

    def describe(self) -> str:
        return self.meaning


class SecurityStatusNotSatisfied(CardStatusError):
    """6982: the command needs a verified PIN or an authentication that has not happened."""

    meaning = "security status not satisfied"


class AuthenticationBlocked(CardStatusError):
    """6983: the PIN or key is blocked; only the issuer can unblock the card."""

    meaning = "authentication method blocked"


class VerificationFailed(CardStatusError):
    """63CX: the PIN (or key) was wrong; `tries_left` attempts remain before it is blocked."""

    meaning = "verification failed"

    def __init__(self, header: bytes, response):
        self.tries_left = response.sw2 & 0x0F
        super().__init__(header, response)

    def describe(self) -> str:
        return f"{self.meaning}, {self.tries_left} tries left"


class FileNotFound(CardStatusError):
    """6A82: no file or application with that identifier (a card from another issuer?)."""

    meaning = "file or application not found"


class RecordNotFound(CardStatusError):
    """6A83: no record with that number (past the last record of the file)."""

    meaning = "record not found"
