"""A scripted clerk for the demo station: works the bench as a person would.

It follows the clerk's screen as its page does (the state the agent pushes over Server-Sent
Events), swipes cards, puts cocoons on the scale, and enters the grade and confirms through the
screen's HTTP interface, as the page's taps do (agent.demo.screen_client). It has only what a
clerk has: the cards, the platform and the screen. The station decides everything, as in the
field.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from decimal import Decimal

DEFECTS = ("perforated", "stained", "thin", "mouldy")


class Screen:
    """The last state the clerk's screen showed."""

    def __init__(self):
        self.state: dict = {}
        self._cond = threading.Condition()

    @property
    def step(self) -> str:
        return self.state.get("phase", "")

    @property
    def message(self) -> str:
        return (self.state.get("message") or {}).get("text", "")

    def feed(self, state: dict) -> None:
        with self._cond:
            self.state = state
            self._cond.notify_all()

    def wait(self, predicate: Callable[[Screen], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)


class Clerk:
    def __init__(self, bench, screen: Screen, client, say: Callable[[str], None], *,
                 seed: int | None = None, stop: threading.Event | None = None):
        self.bench, self.screen, self.client, self.say = bench, screen, client, say
        self.stop = stop or threading.Event()   # the demo stopping: no more waiting
        self.rng = random.Random(seed)
        self.vouchers: list[str] = []

    def _wait_step(self, step: str, timeout: float = 15) -> bool:
        return self.wait(lambda s: s.step == step, timeout)

    def wait(self, predicate: Callable[[Screen], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.stop.is_set() and time.monotonic() < deadline:
            if self.screen.wait(predicate, min(0.2, deadline - time.monotonic())):
                return True
        return False

    def _tap(self, action: str, **extra) -> bool:
        status, answer = self.client.act(action, **extra)
        if status >= 300:
            self.say(f"the screen refused {action}: {answer.get('error')}")
            return False
        return True

    def sign_in(self) -> bool:
        with self.bench.staff:
            ok = self._wait_step("ready")
        if ok or not self.stop.is_set():
            self.say("signed in with the staff card" if ok else
                     f"could not sign in: {self.screen.message}")
        return ok

    def sell(self, farmer_card, stop: threading.Event) -> str | None:
        """One purchase from swipe to voucher; the voucher number, or None."""
        if stop.is_set():
            return None
        farmer_card.insert()
        try:
            if not self._wait_step("weighing"):
                self.say(f"card not accepted: {self.screen.message}")
                return None
            farmer = self.screen.state["farmer"]
            kg = Decimal(self.rng.randrange(3_000, 9_000)).scaleb(-2)   # 30.00 - 89.99 kg
            self.say(f"farmer {farmer['name']} ({farmer['id']}); {kg} kg of cocoons on the "
                     "scale")
            self.bench.load_platform(kg + Decimal("0.5"))                # basket, 0.5 kg tare
            if not self._wait_step("grading"):
                self.say(f"no stable weight: {self.screen.message}")
                return None
            fields = [f["name"] for f in self.screen.state.get("fields", [])]
            sample = {"shell_g": str(Decimal(self.rng.randrange(880, 1000)).scaleb(-2)),
                      "moisture_pct": str(Decimal(self.rng.randrange(140, 170)).scaleb(-1)),
                      "reelable_pct": "100"}
            measurements = {name: sample.get(name, "0") for name in fields}
            self.say("taps the grade: " + " ".join(f"{k}={v}" for k, v in measurements.items()))
            if not self._tap("grade", measurements=measurements):
                return None
            if not self._wait_step("confirming"):
                self.say(f"grading refused: {self.screen.message}")
                return None
            priced = self.screen.state["priced"]
            self.say(f"grade {priced['grade']}, {priced['unit_price']} yuan/kg, amount "
                     f"{priced['amount']} yuan; the farmer agrees, taps Confirm")
            before = (self.screen.state.get("last_voucher") or {}).get("voucher")
            if not self._tap("confirm"):
                return None
            if not self.wait(lambda s: s.step == "ready" and (
                    s.state.get("last_voucher") or {}).get("voucher") not in (None, before), 15):
                self.say(f"sale not recorded: {self.screen.message}")
                return None
            voucher = self.screen.state["last_voucher"]["voucher"]
            self.vouchers.append(voucher)
            self.say(f"sale recorded, voucher {voucher} printed")
            return voucher
        finally:
            farmer_card.remove()
            self.bench.load_platform("0")
            time.sleep(0.2)
