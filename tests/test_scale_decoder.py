"""Properties of every protocol's decoder: no crash on any bytes, and the same events however
the stream is split into reads."""

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.scale import (
    NAMES,
    Decoder,
    FrameError,
    Reading,
    Reply,
    ad_ascii,
    get_protocol,
    mtsics,
    toledo,
    xk3190_a9,
    xk3190_a12,
)

FRAMES = {
    "xk3190-a9": [xk3190_a9.encode(Decimal("12.34"), 2), xk3190_a9.encode(Decimal(0), 0)],
    "xk3190-a12": [xk3190_a12.encode(Decimal("4.139"), 3),
                   xk3190_a12.encode(None, 0, condition="OL")],
    "toledo": [toledo.encode(Decimal("12.34"), 2), toledo.encode(Decimal("1.5"), 1,
                                                                motion=True)],
    "mt-sics": [mtsics.encode_weight(Decimal("100.00"), "g", stable=True),
                mtsics.encode_reply("Z", "A")],
    "ad-ascii": [ad_ascii.encode(Decimal("12.34"), "kg"), ad_ascii.encode(None, "kg")],
}


def summary(events):
    """(type, raw) per event, adjacent garbage merged: a read boundary may split a run of
    noise into two reports, which is fine; it must not change anything else."""
    out = []
    for e in events:
        name = type(e).__name__
        if out and name == "GarbageError" and out[-1][0] == name:
            out[-1] = (name, out[-1][1] + e.raw)
        else:
            out.append((name, e.raw))
    return out


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=300), name=st.sampled_from(NAMES))
def test_any_bytes_give_events_never_exceptions(data, name):
    d = Decoder(get_protocol(name))
    events = d.feed(data) + d.reset()
    assert all(isinstance(e, Reading | Reply | FrameError) for e in events)
    # Nothing is lost silently: every byte is in a frame or in a garbage report.
    assert sum(len(e.raw) for e in events) == len(data)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(NAMES), noise=st.binary(max_size=40),
       cuts=st.lists(st.integers(min_value=1, max_value=40), max_size=20))
def test_split_invariance(name, noise, cuts):
    good = FRAMES[name]
    stream = good[0] + noise + good[1] + good[0]
    whole = summary(Decoder(get_protocol(name)).feed(stream))
    d, pieces, at = Decoder(get_protocol(name)), [], 0
    for cut in cuts:
        pieces += d.feed(stream[at:at + cut])
        at += cut
    pieces += d.feed(stream[at:])
    assert summary(pieces) == whole
    # The last frame always survives whatever noise came before it.
    assert whole[-1] == ("Reading", good[0])
