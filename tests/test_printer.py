"""Vouchers as ESC/POS bytes (dummy and file-backed printers)."""

import json

import pytest

from drivers.printer import PrinterError, open_printer, print_voucher, qr_payload, voucher_lines

VOUCHER = {"voucher": "station-01-20260601-0001", "device": "station-01", "seq": 42,
           "farmer": "Zhang San", "farmer_id": "F-0001", "gross_g": 52400, "tare_g": 60,
           "net_g": 52340, "grade": "+1", "unit_price": "38.50", "amount": "2015.09"}


def test_voucher_text_and_qr_bytes():
    printer = open_printer("dummy://")
    print_voucher(printer, VOUCHER)
    out = printer.output
    for line in voucher_lines(VOUCHER):
        assert line.encode() in out
    assert b"Net:   52.340 kg" in out and b"AMOUNT: 2015.09 yuan" in out
    assert b"\x1d(k" in out  # GS ( k: native QR code
    assert qr_payload(VOUCHER).encode() in out
    assert json.loads(qr_payload(VOUCHER)) == {"d": "station-01", "s": 42,
                                               "v": "station-01-20260601-0001"}
    assert out.endswith(b"\x1dV\x00")  # full cut


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
