"""A scripted clerk at the technicians' terminal console: works the bench as a person would.

It watches the station's screen (the text `cocoon-agent station` prints), swipes cards, puts
cocoons on the scale, types the grade and confirms, using only what a clerk has: the cards,
the platform and the keyboard. The station decides everything, as in the field. For stations
without the clerk's screen (a release before it, as the upgrade tests run); the demo's clerk
uses the screen (agent.demo.clerk).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from decimal import Decimal

DEFECTS = ("perforated", "stained", "thin", "mouldy")


class Screen:
    """The last station screen seen, fed line by line from the station's output."""

    def __init__(self):
        self.step = ""
        self.message = ""
        self._cond = threading.Condition()

    def feed(self, line: str) -> None:
        line = line.rstrip("\n")
        with self._cond:
            if line.startswith("step:"):
                self.step = line.split(":", 1)[1].strip()
            elif line.startswith(">>"):
                self.message = line[2:].strip()
            else:
                return
            self._cond.notify_all()

    def wait(self, predicate: Callable[[Screen], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout)


class Clerk:
    def __init__(self, bench, screen: Screen, type_line: Callable[[str], None],
                 say: Callable[[str], None], *, seed: int | None = None):
        self.bench, self.screen, self.type_line, self.say = bench, screen, type_line, say
        self.rng = random.Random(seed)
        self.vouchers: list[str] = []

    def _wait_step(self, step: str, timeout: float = 15) -> bool:
        return self.screen.wait(lambda s: s.step == step, timeout)

    def sign_in(self) -> bool:
        with self.bench.staff:
            ok = self._wait_step("ready")
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
            kg = Decimal(self.rng.randrange(3_000, 9_000)).scaleb(-2)   # 30.00 - 89.99 kg
            self.say(f"{self.screen.message.split('.')[0]}; {kg} kg of cocoons on the scale")
            self.bench.load_platform(kg + Decimal("0.5"))                # basket, 0.5 kg tare
            if not self._wait_step("grading"):
                self.say(f"no stable weight: {self.screen.message}")
                return None
            shell = Decimal(self.rng.randrange(880, 1000)).scaleb(-2)
            moisture = Decimal(self.rng.randrange(140, 170)).scaleb(-1)
            defects = " ".join(f"defects_pct.{d}=0" for d in DEFECTS)
            line = f"g shell_g={shell} moisture_pct={moisture} reelable_pct=100 {defects}"
            self.type_line(line)
            if not self._wait_step("confirming"):
                self.say(f"grading refused: {self.screen.message}")
                return None
            self.say(self.screen.message.replace(" Farmer confirms?", ""))
            self.type_line("c")
            if not self.screen.wait(lambda s: s.message.startswith("Sale recorded"), 15):
                self.say(f"sale not recorded: {self.screen.message}")
                return None
            # the station's own line, without the notices it may add after " | "
            said = self.screen.message.split(" | ", 1)[0]
            voucher = said.split("voucher ", 1)[1].split(".")[0].strip()
            self.vouchers.append(voucher)
            self.say(f"sale recorded, voucher {voucher} printed")
            return voucher
        finally:
            farmer_card.remove()
            self.bench.load_platform("0")
            time.sleep(0.2)
