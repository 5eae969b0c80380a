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


def kg(grams: int | str) -> str:
    """Grams (an int or a string of digits) as kilograms with three decimals."""
    return str((Decimal(grams) / 1000).quantize(Decimal("0.001")))


def _exact_kg(grams: str) -> str:
    """Exact kilograms of a decimal string of grams; a fraction of a gram is kept."""
    kg = Decimal(grams).scaleb(-3)
    three = kg.quantize(Decimal("0.001"))
    return f"{three:f}" if kg == three else f"{kg.normalize():f}"


# The voucher's words in each language the station speaks (`[station] language`): the farmer
# reads them. Values (names, numbers, vouchers) are printed as they are.
WORDS = {
    "en": {"title": "FRESH COCOON PURCHASE VOUCHER", "copy": "*** COPY ***", "no": "No. {}",
           "farmer": "Farmer: {} ({})", "gross": "Gross: {} kg", "tare": "Tare:  {} kg",
           "net": "Net:   {} kg", "less_weight": "Less {} % of weight: {} {} %",
           "payable": "Payable: {} kg", "grade": "Grade: {}", "graded": " at {} yuan/{}",
           "less_price": "Less {} % of price: {} {} %", "price": "Price: {} yuan/kg",
           "amount": "AMOUNT: {} kg x {} = {} yuan", "event": "Event: {} #{}"},
    "zh-CN": {"title": "鲜茧收购凭证", "copy": "*** 补打副本 ***", "no": "凭证号 {}",
              "farmer": "蚕农：{}（{}）", "gross": "毛重：{} 公斤", "tare": "皮重：{} 公斤",
              "net": "净重：{} 公斤", "less_weight": "扣重 {}%：{} {}%",
              "payable": "计价重量：{} 公斤", "grade": "等级：{}", "graded": "（{} 元/{}）",
              "less_price": "扣价 {}%：{} {}%", "price": "单价：{} 元/公斤",
              "amount": "金额：{} 公斤 × {} = {} 元", "event": "事件：{} #{}"},
}
MEASURES_ZH = {"moisture": "含水率", "reelable": "上车茧率", "defects.perforated": "穿头茧",
               "defects.stained": "黄斑茧", "defects.thin": "薄皮茧", "defects.mouldy": "霉茧"}
LANGUAGES = tuple(WORDS)


def voucher_lines(v: dict, language: str = "en") -> list[str]:
    """The voucher's text, one line per item, in `language` (also shown on screen and tested).

    The printed numbers multiply out, so that the farmer can check the sum: net, each
    deduction with its reason (what was measured), the payable weight, the price and the
    amount = payable weight x price, rounded to the fen.
    """
    w = WORDS[language]
    unit = {"kg": "公斤", "50kg": "50公斤"} if language == "zh-CN" else {}

    def measure(name: str) -> str:
        return MEASURES_ZH.get(name, name) if language == "zh-CN" else name

    lines = [
        w["title"],
        *([w["copy"]] if v.get("copy") else []),
        w["no"].format(v["voucher"]),
        w["farmer"].format(v["farmer"], v["farmer_id"]),
        w["gross"].format(kg(v["gross_g"])),
        w["tare"].format(kg(v["tare_g"])),
        w["net"].format(kg(v["net_g"])),
    ]
    deductions = v.get("deductions", ())
    for d in deductions:
        if d["applies_to"] == "mass":
            lines.append(w["less_weight"].format(d["pct"], measure(d["measure"]),
                                                 d["measured_pct"]))
    payable = _exact_kg(v["payable_g"]) if "payable_g" in v else kg(v["net_g"])
    lines.append(w["payable"].format(payable))
    price_unit = v.get("price_unit") or "kg"
    graded = w["graded"].format(v["graded_price"], unit.get(price_unit, price_unit)) \
        if v.get("graded_price") else ""
    lines.append(w["grade"].format(v["grade"]) + graded)
    for d in deductions:
        if d["applies_to"] != "mass":
            lines.append(w["less_price"].format(d["pct"], measure(d["measure"]),
                                                d["measured_pct"]))
    lines += [
        w["price"].format(v["unit_price"]),
        w["amount"].format(payable, v["unit_price"], v["amount"]),
        w["event"].format(v["device"], v["seq"]),
    ]
    return lines


# The end-of-day report's words (the station's language, like the voucher's).
REPORT_WORDS = {
    "en": {"title": "END OF DAY REPORT", "station": "Station {}  day {}", "clerk": "Closed by {}",
           "grade": "Grade {}: {} sales, {} kg, {} yuan",
           "total": "TOTAL: {} sales, {} kg, {} yuan", "voided": "Voided: {}",
           "acked": "Acknowledged by the bank: {} of {}", "paid": "Paid: {}"},
    "zh-CN": {"title": "日结报表", "station": "收购站 {}  日期 {}", "clerk": "日结人：{}",
              "grade": "等级 {}：{} 笔，{} 公斤，{} 元",
              "total": "合计：{} 笔，{} 公斤，{} 元", "voided": "作废：{} 笔",
              "acked": "银行已收到：{} / {} 笔", "paid": "已付款：{} 笔"},
}


def day_report_lines(body: dict, language: str = "en") -> list[str]:
    """The end-of-day report as printed, from a `day.closed` body, in `language`: the day,
    the count, weight and amount per grade and in all, and how many of the day's sales the
    bank has acknowledged and paid."""
    w = REPORT_WORDS[language]
    lines = [w["title"], w["station"].format(body["station"], body["day"]),
             w["clerk"].format(body["clerk"])]
    for g in body["by_grade"]:
        lines.append(w["grade"].format(g["grade"], g["count"], kg(g["net_g"]), g["amount"]))
    lines += [w["total"].format(body["count"], kg(body["net_g"]), body["amount"]),
              w["voided"].format(body["voided"]),
              w["acked"].format(body["acknowledged"], body["count"]),
              w["paid"].format(body["paid"])]
    return lines


def qr_payload(v: dict) -> str:
    return json.dumps({"d": v["device"], "s": v["seq"], "v": v["voucher"]},
                      separators=(",", ":"))


# ESC/POS for Chinese printers: FS & enters the double-byte (Chinese) character mode, in which
# the printer reads GB18030 (GB2312 on older models, a subset of it); FS . leaves it.
CHINESE_ON, CHINESE_OFF = b"\x1c\x26", b"\x1c\x2e"


def print_lines(printer, lines: list[str], *, qr: str | None = None,
                language: str = "en") -> None:
    """Print a report or a voucher: its first line as a bold centred title, the rest as they
    are, then the QR code when there is one, and cut; raises PrinterError on any printer
    fault. Chinese is sent as GB18030 in the printer's Chinese mode."""
    try:
        printer.set(align="center", bold=True)
        _text(printer, lines[0] + "\n", language)
        printer.set(align="left", bold=False)
        for line in lines[1:]:
            _text(printer, line + "\n", language)
        if qr is not None:
            printer.qr(qr, native=True, size=4)
        printer.cut()
    except Exception as exc:  # escpos and the transports raise unrelated types
        raise PrinterError(f"printing {lines[0].lower()} failed: {exc}") from None


def _text(printer, text: str, language: str) -> None:
    if language == "zh-CN":
        printer._raw(CHINESE_ON + text.encode("gb18030") + CHINESE_OFF)
    else:
        printer.text(text)


def print_voucher(printer, v: dict, language: str = "en") -> None:
    """Print one voucher in `language`; raises PrinterError on any printer fault."""
    try:
        print_lines(printer, voucher_lines(v, language), qr=qr_payload(v), language=language)
    except PrinterError as exc:
        raise PrinterError(f"printing voucher {v.get('voucher')} failed: "
                           f"{str(exc).split(': ', 1)[-1]}") from None
