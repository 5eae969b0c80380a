"""Vouchers as ESC/POS bytes (dummy and file-backed printers)."""

import json

import pytest

from drivers.printer import (
    PrinterError,
    day_report_lines,
    open_printer,
    print_lines,
    print_voucher,
    qr_payload,
    voucher_lines,
)

VOUCHER = {"voucher": "station-01-20260601-0001", "device": "station-01", "seq": 42,
           "farmer": "Zhang San", "farmer_id": "F-0001", "gross_g": 52400, "tare_g": 60,
           "net_g": 52340, "grade": "+1", "unit_price": "38.50", "amount": "2015.09"}


def test_voucher_text_and_qr_bytes():
    printer = open_printer("dummy://")
    print_voucher(printer, VOUCHER)
    out = printer.output
    for line in voucher_lines(VOUCHER):
        assert line.encode() in out
    assert b"Net:   52.340 kg" in out
    assert b"AMOUNT: 52.340 kg x 38.50 = 2015.09 yuan" in out
    assert b"\x1d(k" in out  # GS ( k: native QR code
    assert qr_payload(VOUCHER).encode() in out
    assert json.loads(qr_payload(VOUCHER)) == {"d": "station-01", "s": 42,
                                               "v": "station-01-20260601-0001"}
    assert out.endswith(b"\x1dV\x00")  # full cut


def test_the_farmer_can_check_the_sum():
    """51.8 kg at 40.1 yuan/kg is 2077.18 yuan; with 3.5 % of the weight deducted for moisture
    the farmer is paid 2004.48, and the voucher says why: every printed number multiplies out."""
    v = {**VOUCHER, "gross_g": 52000, "tare_g": 200, "net_g": 51800, "grade": "A",
         "unit_price": "40.1000", "amount": "2004.48", "payable_g": "49987.000",
         "graded_price": "40.10", "price_unit": "kg",
         "deductions": [{"measure": "moisture", "measured_pct": "18.0", "applies_to": "mass",
                         "pct": "3.5"}]}
    lines = voucher_lines(v)
    assert lines[3:] == [
        "Gross: 52.000 kg", "Tare:  0.200 kg", "Net:   51.800 kg",
        "Less 3.5 % of weight: moisture 18.0 %", "Payable: 49.987 kg",
        "Grade: A at 40.10 yuan/kg", "Price: 40.1000 yuan/kg",
        "AMOUNT: 49.987 kg x 40.1000 = 2004.48 yuan", "Event: station-01 #42"]
    # ... and does multiply out: 51.8 x (100 - 3.5) % x 40.1, rounded to the fen.
    from decimal import ROUND_HALF_UP, Decimal
    assert (Decimal("51.800") * Decimal("0.965") * Decimal("40.1000")).quantize(
        Decimal("0.01"), ROUND_HALF_UP) == Decimal("2004.48")
    # A fraction of a gram of payable weight is printed, not rounded away.
    assert "Payable: 49.987965 kg" in voucher_lines({**v, "payable_g": "49987.965"})


def test_file_printer_writes_the_same_bytes(tmp_path):
    target = tmp_path / "lp0"
    target.touch()
    printer = open_printer(f"file://{target}")
    print_voucher(printer, VOUCHER)
    printer.close()
    data = target.read_bytes()
    assert b"No. station-01-20260601-0001" in data and qr_payload(VOUCHER).encode() in data


def test_bad_urls_are_clear():
    with pytest.raises(PrinterError, match="unknown printer URL"):
        open_printer("lpt://1")
    with pytest.raises(PrinterError, match="cannot open printer"):
        open_printer("file:///nonexistent-dir/lp0")


def test_a_chinese_voucher_prints_as_gb18030_in_the_printers_chinese_mode():
    """[station] language = "zh-CN" (the default): the farmer reads the voucher in Chinese,
    sent as GB18030 between FS & and FS . (the ESC/POS Chinese mode), and the numbers are the
    same ones, still multiplying out."""
    v = {**VOUCHER, "farmer": "张三", "payable_g": "52340", "graded_price": "38.50",
         "price_unit": "kg", "copy": True,
         "deductions": [{"measure": "moisture", "measured_pct": "18.0", "applies_to": "mass",
                         "pct": "0"}]}
    lines = voucher_lines(v, "zh-CN")
    assert lines[:3] == ["鲜茧收购凭证", "*** 补打副本 ***", "凭证号 station-01-20260601-0001"]
    assert "蚕农：张三（F-0001）" in lines and "扣重 0%：含水率 18.0%" in lines
    assert lines[-2] == "金额：52.340 公斤 × 38.50 = 2015.09 元"
    printer = open_printer("dummy://")
    print_voucher(printer, v, "zh-CN")
    out = printer.output
    title = b"\x1c\x26" + "鲜茧收购凭证\n".encode("gb18030") + b"\x1c\x2e"
    assert title == b"\x1c\x26\xcf\xca\xbc\xeb\xca\xd5\xb9\xba\xc6\xbe\xd6\xa4\n\x1c\x2e"
    assert title in out
    for line in lines:
        assert b"\x1c\x26" + (line + "\n").encode("gb18030") + b"\x1c\x2e" in out
    assert "张三".encode("gb18030") in out and "张三".encode() not in out
    assert qr_payload(v).encode() in out and out.endswith(b"\x1dV\x00")


def test_the_end_of_day_report_prints_in_the_stations_language():
    """The report of a `day.closed` body, in Chinese as GB18030 in the Chinese mode, and in
    English; the same numbers in both."""
    body = {"station": "station-01", "day": "20261207", "clerk": "S-09", "count": 3,
            "net_g": "152340", "amount": "6015.09", "voided": 1, "acknowledged": 2, "paid": 1,
            "by_grade": [{"grade": "+1", "count": 2, "net_g": "100000", "amount": "3999.00"},
                         {"grade": "0", "count": 1, "net_g": "52340", "amount": "2016.09"}]}
    zh = day_report_lines(body, "zh-CN")
    assert zh == ["日结报表", "收购站 station-01  日期 20261207", "日结人：S-09",
                  "等级 +1：2 笔，100.000 公斤，3999.00 元",
                  "等级 0：1 笔，52.340 公斤，2016.09 元",
                  "合计：3 笔，152.340 公斤，6015.09 元", "作废：1 笔", "银行已收到：2 / 3 笔",
                  "已付款：1 笔"]
    en = day_report_lines(body)
    assert en[0] == "END OF DAY REPORT" and "TOTAL: 3 sales, 152.340 kg, 6015.09 yuan" in en
    assert "Acknowledged by the bank: 2 of 3" in en
    printer = open_printer("dummy://")
    print_lines(printer, zh, language="zh-CN")
    for line in zh:
        assert b"\x1c\x26" + (line + "\n").encode("gb18030") + b"\x1c\x2e" in printer.output
