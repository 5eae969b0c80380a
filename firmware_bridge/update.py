"""A firmware update of the co-processor: checks, chunked transfer with resume, commit, trial
boot, confirmation or rollback, and an audit event for every attempt and outcome.

The image is refused before a byte of it is sent when it is unsigned, not signed by the pinned
vendor key, damaged, for another board, or not newer than the running firmware. The transfer
resumes where the box's flash says it got to, after the box restarted or stopped answering,
and after this agent was itself interrupted (run it again with the same image). The box keeps
the old image until the new one has booted and been confirmed (A/B) and goes back to it when
the new one does not boot. docs/firmware-protocol.md describes the messages.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.contract.signing import Verifier

from . import messages as m
from .bridge import Bridge, BridgeState, BridgeStatus
from .errors import ImageError, LinkError, UpdateError
from .frames import crc16
from .image import Image, Version, check_installable, verify_signature

log = logging.getLogger(__name__)

CHUNK_SIZE = 192


@dataclass(frozen=True)
class UpdateResult:
    previous: Version
    running: Version
    slot: int
    resumes: int          # how many times the transfer was resumed after an interruption
    seconds: float


@dataclass(frozen=True)
class Outcome:
    """A step or the end of an update attempt, for the agent to record as a signed alert event
    of type `type` (the bridge writes no events itself)."""

    type: str
    body: dict


class _Interrupted(Exception):
    """The box restarted or stopped answering: begin again, resuming from its flash."""


class FirmwareUpdater:
    """Updates the box behind `bridge` (started, or startable) with images signed by `vendor`.

    `record(outcome)` receives each `Outcome` (the CLI records it as an event in the outbox)."""

    def __init__(self, bridge: Bridge, vendor: Verifier, *,
                 record: Callable[[Outcome], object] = lambda outcome: None,
                 hardware: int | None = None, chunk_size: int = CHUNK_SIZE,
                 answer_timeout_s: float = 2.0, boot_timeout_s: float = 20.0,
                 max_interruptions: int = 5):
        self.bridge, self.vendor, self.record = bridge, vendor, record
        self.hardware, self.chunk_size = hardware, chunk_size
        self.answer_timeout_s, self.boot_timeout_s = answer_timeout_s, boot_timeout_s
        self.max_interruptions = max_interruptions
        self._restarted = threading.Event()
        self._offset = 0          # how far the box has the image (firmware.update_failed)
        self.progress: Callable[[int, int], None] = lambda done, total: None

    # -- the whole update ------------------------------------------------------------------

    def run(self, image: Image, file: str = "") -> UpdateResult:
        """Install `image`. Raises ImageError (refused, nothing sent), UpdateError, or what
        stopped it otherwise (the box offline: LinkTimeout); every exit but a success or a
        refusal is recorded as `firmware.update_failed` first."""
        sha = image.sha256.hex()
        try:
            verify_signature(image, self.vendor)
        except ImageError as exc:
            self._refused(exc, image, file)
            raise
        self._offset = 0
        refused = False
        try:
            hello = self.bridge.wait_online(self.boot_timeout_s)
            running = Version(*hello.version)
            try:
                check_installable(image, self.vendor, running, self.hardware or hello.hardware)
            except ImageError as exc:
                refused = True
                self._refused(exc, image, file)
                raise
            self.record(Outcome("firmware.update_started", {
                "image_version": str(image.version), "running_version": str(running),
                "sha256": sha, "length": image.length}))
            started = time.monotonic()
            unsubscribe = self.bridge.subscribe(self._on_item)
            try:
                _, resumes = self._transfer(image)
                result = self._commit(image, running, resumes, started)
            finally:
                unsubscribe()
        except BaseException as exc:   # an interrupted run too: it is resumed by the next one
            if not refused:
                reason = str(exc) if isinstance(exc, UpdateError) else \
                    f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                self.record(Outcome("firmware.update_failed", {
                    "reason": reason, "image_version": str(image.version), "sha256": sha,
                    "offset": self._offset}))
            raise
        self.record(Outcome("firmware.updated", {
            "image_version": str(image.version), "previous_version": str(running),
            "slot": "AB"[result.slot & 1], "sha256": sha, "resumes": result.resumes,
            "seconds": f"{result.seconds:.1f}"}))
        return result

    def _refused(self, exc: ImageError, image: Image | None, file: str) -> None:
        body = {"reason": str(exc), "file": file}
        if image is not None:
            body.update(image_version=str(image.version), sha256=image.sha256.hex())
        self.record(Outcome("firmware.update_refused", body))

    def refuse_unreadable(self, exc: ImageError, file: str) -> None:
        """Record the refusal of a file that is not even a readable image."""
        self._refused(exc, None, file)

    # -- transfer --------------------------------------------------------------------------

    def _transfer(self, image: Image) -> tuple[int, int]:
        interruptions = resumes = 0
        offset = 0
        while True:
            try:
                self._restarted.clear()
                self.bridge.wait_online(self.boot_timeout_s)
                status = self._ask(m.UpdateBegin(*image.version, image.length, image.sha256,
                                                 image.signature, self.chunk_size),
                                   lambda x: isinstance(x, m.UpdateStatus))
                if status.state == m.UpdateState.FAILED or status.sha256 != image.sha256:
                    raise UpdateError("the box refused the image (its own signature or "
                                      "board check failed)")
                if status.next_offset:
                    log.info("resuming the transfer at byte %d of %d", status.next_offset,
                             image.length)
                self._offset = status.next_offset
                offset = self._send_chunks(image, status.next_offset)
                final = self._ask(m.UpdateQuery(), lambda x: isinstance(x, m.UpdateStatus))
                if final.state == m.UpdateState.COMPLETE and final.sha256 == image.sha256:
                    return offset, resumes
                if final.state == m.UpdateState.FAILED:
                    raise UpdateError("the box found the received image damaged (SHA-256 "
                                      "or signature); it erased it")
                raise _Interrupted(f"box reports state {final.state} after the last chunk")
            except (_Interrupted, LinkError) as exc:
                interruptions += 1
                if interruptions > self.max_interruptions:
                    raise UpdateError(f"the transfer was interrupted {interruptions} times "
                                      f"without completing; last: {exc}") from None
                resumes += 1
                log.warning("firmware transfer interrupted (%s); resuming", exc)
                time.sleep(0.05 * interruptions)  # let the bridge notice a lost link first

    def _send_chunks(self, image: Image, offset: int) -> int:
        bad_crc = 0
        while offset < image.length:
            data = image.payload[offset:offset + self.chunk_size]
            ack = self._ask(m.UpdateChunk(offset, crc16(data), data),
                            lambda x: isinstance(x, m.UpdateChunkAck))
            if ack.status == m.ChunkStatus.OK:
                offset, bad_crc = ack.next_offset, 0
                self._offset = offset
                self.progress(offset, image.length)
            elif ack.status == m.ChunkStatus.BAD_CRC:
                bad_crc += 1
                if bad_crc > 5:
                    raise UpdateError(f"the box keeps rejecting the chunk at {offset} (CRC)")
            elif ack.status == m.ChunkStatus.WRONG_OFFSET:
                offset = ack.next_offset
            else:
                raise _Interrupted("the box has no update in progress (it restarted)")
        return offset

    def _ask(self, message: m.Message, match) -> m.Message:
        """Request/answer that gives up at once when the box restarts."""
        waiter = self.bridge.expect(match)
        try:
            self.bridge.send(message)
            deadline = time.monotonic() + self.answer_timeout_s
            while not waiter.done.wait(0.01):
                if self._restarted.is_set():
                    raise _Interrupted("the box restarted")
                if time.monotonic() > deadline:
                    raise _Interrupted(f"no answer to {type(message).__name__}")
            return waiter.result
        finally:
            self.bridge.forget(waiter)

    def _on_item(self, item) -> None:
        if isinstance(item, BridgeStatus) and item.state is not BridgeState.ONLINE:
            self._restarted.set()

    # -- commit, trial boot, confirm -------------------------------------------------------

    def _commit(self, image: Image, running: Version, resumes: int,
                started: float) -> UpdateResult:
        booted = self.bridge.expect(
            lambda x: isinstance(x, m.Hello) and (x.boot_status != m.BootStatus.NORMAL
                                                  or x.version == tuple(image.version)))
        try:
            try:
                self.bridge.send(m.UpdateCommit(image.sha256))
            except LinkError as exc:
                raise UpdateError(f"the box did not take the commit: {exc}") from None
            if not booted.done.wait(self.boot_timeout_s):
                raise UpdateError(f"the box did not come back within {self.boot_timeout_s:g} s "
                                  "after the commit")
            hello = booted.result
        finally:
            self.bridge.forget(booted)
        now = Version(*hello.version)
        if hello.boot_status == m.BootStatus.ROLLED_BACK or now != image.version:
            self.record(Outcome("firmware.rolled_back", {
                "image_version": str(image.version), "running_version": str(now),
                "slot": "AB"[hello.active_slot & 1], "sha256": image.sha256.hex()}))
            raise UpdateError(f"firmware {image.version} did not boot; the box went back to "
                              f"{now}")
        if hello.boot_status == m.BootStatus.TRIAL:
            try:
                confirmed = self.bridge.request(
                    m.UpdateConfirm(*image.version),
                    lambda x: isinstance(x, m.Hello) and x.boot_status == m.BootStatus.NORMAL,
                    self.answer_timeout_s * 2)
            except LinkError as exc:
                raise UpdateError(f"firmware {image.version} booted on trial but could not be "
                                  f"confirmed: {exc}; the box will go back to {running} at "
                                  "its next restart") from None
            hello = confirmed
        return UpdateResult(running, Version(*hello.version), hello.active_slot, resumes,
                            time.monotonic() - started)
