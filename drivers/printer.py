"""Purchase vouchers on an ESC/POS receipt printer, through python-escpos.

Regulators require a written voucher for every purchase. The voucher shows what the farmer
agreed to (number, farmer, gross/tare/net, grade, unit price, amount) and a QR code carrying the
event's device and sequence number, so anyone can later fetch the signed event from the bank and
check the paper against it.

Printers are named by URL, like serial ports: `usb://04b8:0e15`, `serial:///dev/ttyUSB1?baudrate=
19200`, `file:///dev/usb/lp0` (a character device or any file), `dummy://` (keeps the bytes in
memory). Printing happens after the sale is durable; a printer fault never undoes a sale, it is
reported and the voucher can be printed again.
"""

from __future__ import annotations

import json
from decimal import Decimal
from urllib.parse import parse_qs, urlparse

from drivers.errors import DriverError


class PrinterError(DriverError):
    """The printer is missing, misconfigured or failed while printing."""


def open_printer(url: str):
    """An escpos printer object for a printer URL."""
    from escpos import printer as escpos_printer  # imported late: optional USB backends

    parsed = urlparse(url)
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    try:
        if parsed.scheme == "dummy":
            return escpos_printer.Dummy()
        if parsed.scheme == "file":
            printer = escpos_printer.File(parsed.path)
        elif parsed.scheme == "serial":
            printer = escpos_printer.Serial(devfile=parsed.path,
                                            baudrate=int(query.get("baudrate", 19200)))
        elif parsed.scheme == "usb":
            vid, _, pid = parsed.netloc.partition(":")
            printer = escpos_printer.Usb(int(vid, 16), int(pid, 16))
        else:
            printer = None
        if printer is not None:
            printer.open(raise_not_found=True)  # fail now, not at the first voucher
            return printer
    except (OSError, ValueError) as exc:
        raise PrinterError(f"cannot open printer {url}: {exc}") from None
    except Exception as exc:  # escpos raises its own exception tree (USB not found, ...)
        raise PrinterError(f"cannot open printer {url}: {type(exc).__name__}: {exc}") from None
    raise PrinterError(f"unknown printer URL {url!r}: use usb://, serial://, file:// or dummy://")


def _kg(grams: int) -> str:
    return str((Decimal(grams) / 1000).quantize(Decimal("0.001")))


def _exact_kg(grams: str) -> str:
    """Exact kilograms of a decimal string of grams; a fraction of a gram is kept."""
    kg = Decimal(grams).scaleb(-3)
    three = kg.quantize(Decimal("0.001"))
    return f"{three:f}" if kg == three else f"{kg.normalize():f}"


def voucher_lines(v: dict) -> list[str]:
    """The voucher's text, one line per item (also shown on screen and tested).

    The printed numbers multiply out, so that the farmer can check the sum: net, each
    deduction with its reason (what was measured), the payable weight, the price and the
    amount = payable weight x price, rounded to the fen.
    """
    lines = [
        "FRESH COCOON PURCHASE VOUCHER",
        *(["*** COPY ***"] if v.get("copy") else []),
        f"No. {v['voucher']}",
        f"Farmer: {v['farmer']} ({v['farmer_id']})",
        f"Gross: {_kg(v['gross_g'])} kg",
        f"Tare:  {_kg(v['tare_g'])} kg",
        f"Net:   {_kg(v['net_g'])} kg",
    ]
    deductions = v.get("deductions", ())
    for d in deductions:
        if d["applies_to"] == "mass":
            lines.append(f"Less {d['pct']} % of weight: {d['measure']} {d['measured_pct']} %")
    payable = _exact_kg(v["payable_g"]) if "payable_g" in v else _kg(v["net_g"])
    lines.append(f"Payable: {payable} kg")
    graded = f" at {v['graded_price']} yuan/{v.get('price_unit') or 'kg'}" \
        if v.get("graded_price") else ""
    lines.append(f"Grade: {v['grade']}{graded}")
    for d in deductions:
        if d["applies_to"] != "mass":
            lines.append(f"Less {d['pct']} % of price: {d['measure']} {d['measured_pct']} %")
    lines += [
        f"Price: {v['unit_price']} yuan/kg",
        f"AMOUNT: {payable} kg x {v['unit_price']} = {v['amount']} yuan",
        f"Event: {v['device']} #{v['seq']}",
    ]
    return lines


def qr_payload(v: dict) -> str:
    return json.dumps({"d": v["device"], "s": v["seq"], "v": v["voucher"]},
                      separators=(",", ":"))


def print_lines(printer, lines: list[str], *, qr: str | None = None) -> None:
    """Print a report or a voucher: its first line as a bold centred title, the rest as they
    are, then the QR code when there is one, and cut; raises PrinterError on any printer
    fault."""
    try:
        printer.set(align="center", bold=True)
        printer.text(lines[0] + "\n")
        printer.set(align="left", bold=False)
        for line in lines[1:]:
            printer.text(line + "\n")
        if qr is not None:
            printer.qr(qr, native=True, size=4)
        printer.cut()
    except Exception as exc:  # escpos and the transports raise unrelated types
        raise PrinterError(f"printing {lines[0].lower()} failed: {exc}") from None


def print_voucher(printer, v: dict) -> None:
    """Print one voucher; raises PrinterError on any printer fault."""
    try:
        print_lines(printer, voucher_lines(v), qr=qr_payload(v))
    except PrinterError as exc:
        raise PrinterError(f"printing voucher {v.get('voucher')} failed: "
                           f"{str(exc).split(': ', 1)[-1]}") from None
