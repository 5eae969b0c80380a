"""MT-SICS answer lines as DOMAIN.md gives them, and the command frames the driver sends."""

from decimal import Decimal

import pytest

from drivers.scale import Decoder, MalformedFrame, UnsupportedUnit, get_protocol, mtsics
from drivers.scale.reading import Reading, Reply, Unit, WeightKind

# `S S     100.00 g`: ID, blank, status, blank, weight right-aligned in 10, blank, unit.
STABLE = b"S S" + b" " + b"    100.00" + b" " + b"g" + b"\r\n"


def test_stable_weight_line_layout():
    assert STABLE == b"S S     100.00 g\r\n"
    r = mtsics.parse(STABLE)
    # S answers the *net* weight (the balance has taken off any tare it holds).
    assert r == Reading("mt-sics", STABLE, Decimal("100.00"), Unit.G, stable=True,
                        kind=WeightKind.NET, net=Decimal("100.00"))


def test_dynamic_weight():
    r = mtsics.parse(b"S D      12.345 kg\r\n")
    assert (r.weight, r.unit, r.stable) == (Decimal("12.345"), Unit.KG, False)


def test_negative_weight():
    assert mtsics.parse(b"S S     -0.003 kg\r\n").weight == Decimal("-0.003")


def test_overload_and_underload():
    over, under = mtsics.parse(b"S +\r\n"), mtsics.parse(b"S -\r\n")
    assert over.overload and over.weight is None
    assert under.underload and under.weight is None


@pytest.mark.parametrize("line, command, status, fields", [
    (b"S I\r\n", "S", "I", ()),
    (b"Z A\r\n", "Z", "A", ()),
    (b"Z I\r\n", "Z", "I", ()),
    (b"Z +\r\n", "Z", "+", ()),
    (b"Z -\r\n", "Z", "-", ()),
    (b"ES\r\n", "ES", "", ()),
    (b"ET\r\n", "ET", "", ()),
    (b"EL\r\n", "EL", "", ()),
    (b'I4 A "B123456789"\r\n', "I4", "A", ("B123456789",)),
])
def test_replies(line, command, status, fields):
    reply = mtsics.parse(line)
    assert reply == Reply("mt-sics", line, command, status, fields)
    assert reply.is_error == (command in ("ES", "ET", "EL"))


def test_tare_answer_is_a_tare_reading():
    r = mtsics.parse(b"T S       2.50 kg\r\n")
    assert (r.kind, r.tare) == (WeightKind.TARE, Decimal("2.50"))


def test_ta_answer_is_the_tare_the_balance_holds():
    r = mtsics.parse(b"TA A      2.000 kg\r\n")
    assert (r.kind, r.tare, r.unit, r.stable) == (WeightKind.TARE, Decimal("2.000"), Unit.KG,
                                                  True)
    assert mtsics.encode_weight(Decimal("2.000"), "kg", stable=True, ident="TA") \
        == b"TA A      2.000 kg\r\n"
    assert mtsics.command("TA").answers(b"TA A      2.000 kg\r\n")


def test_with_tare_gives_gross_tare_and_net():
    tare = mtsics.parse(b"TA A      2.000 kg\r\n")
    net = mtsics.parse(b"S S     20.350 kg\r\n")
    r = mtsics.with_tare(tare, net)
    assert (r.kind, r.weight, r.net, r.tare, r.gross) == (
        WeightKind.NET, Decimal("20.350"), Decimal("20.350"), Decimal("2.000"),
        Decimal("22.350"))
    assert r.raw == tare.raw + net.raw and r.stable
    # No tare held: what the balance shows is the gross.
    none = mtsics.with_tare(mtsics.parse(b"TA A      0.000 kg\r\n"), net)
    assert (none.kind, none.gross, none.tare) == (WeightKind.GROSS, Decimal("20.350"),
                                                  Decimal("0.000"))
    # No TA command: a net weight whose tare is unknown.
    alone = mtsics.with_tare(None, net)
    assert (alone.kind, alone.tare) == (WeightKind.NET, None)
    over = mtsics.with_tare(tare, mtsics.parse(b"S +\r\n"))
    assert over.overload and over.raw.startswith(b"TA A")
    with pytest.raises(ValueError, match="TA in g"):
        mtsics.with_tare(mtsics.parse(b"TA A    200.0 g\r\n"), net)


def test_commands_end_with_cr_lf_and_know_their_answers():
    si = mtsics.command("SI")
    assert si.data == b"SI\r\n"
    assert si.answers(b"S D      1.00 kg\r\n") and si.answers(b"ES\r\n")
    assert not si.answers(b"Z A\r\n")
    z = mtsics.command("Z")
    assert z.answers(b"Z A\r\n") and not z.answers(STABLE)
    assert mtsics.command("@").answers(b'I4 A "X"\r\n')


@pytest.mark.parametrize("line", [b"S S\r\n", b"S S     abc g\r\n", b"s s 1 g\r\n",
                                  b"S S  1.0 g\x07\r\n", b"S S     100.00 g\n"])
def test_malformed(line):
    with pytest.raises(MalformedFrame):
        mtsics.parse(line)


def test_unit_that_is_not_mass():
    with pytest.raises(UnsupportedUnit, match="PCS"):
        mtsics.parse(b"S S         12 PCS\r\n")


def test_garbage_before_a_line_and_partial_lines():
    d = Decoder(get_protocol("mt-sics"))
    events = d.feed(b"\x00\xff" + STABLE + b"  100.0")
    events += d.feed(b"0 g\r\n" + b"Z A\r\n")
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["GarbageError", "Reading", "GarbageError", "Reply"]  # no ID in the tail


def test_unit_change_between_answers():
    d = Decoder(get_protocol("mt-sics"))
    events = d.feed(STABLE + b"S S       0.10 kg\r\n")
    assert type(events[1]).__name__ == "UnitChanged"
