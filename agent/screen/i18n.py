"""The screen's language: gettext catalogs and Babel's number and date formats.

The catalogs are the committed `locale/<ll_CC>/LC_MESSAGES/screen.po` files, compiled in memory
when the screen starts (Babel's pofile and mofile), so that a fresh clone, an editable install
and the installed package all work without a build step. Messages are written in English in the
code (`_("...")`); English needs no catalog. Extract with
`pybabel extract -F agent/screen/babel.cfg -o agent/screen/locale/screen.pot agent/screen` and
merge with `pybabel update -i agent/screen/locale/screen.pot -d agent/screen/locale -D screen`.
"""

from __future__ import annotations

import functools
import gettext
import io
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from pathlib import Path

from babel import Locale
from babel.dates import format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

LOCALE_DIR = Path(__file__).with_name("locale")
DOMAIN = "screen"


@functools.lru_cache(maxsize=4)
def translations(language: str) -> gettext.NullTranslations:
    """The catalog of `language` ("zh-CN", "en"), compiled from its .po file."""
    folder = language.replace("-", "_")     # zh-CN -> zh_CN (not Babel's zh_Hans_CN)
    po = LOCALE_DIR / folder / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not po.is_file():
        return gettext.NullTranslations()
    with po.open("rb") as f:
        catalog = read_po(f, locale=Locale.parse(folder), domain=DOMAIN)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


@dataclass(frozen=True)
class Language:
    """One language of the screen: its tag for `<html lang>`, its messages and its formats."""

    tag: str

    @functools.cached_property
    def locale(self) -> Locale:
        return Locale.parse(self.tag, sep="-")

    def _(self, message: str) -> str:
        return translations(self.tag).gettext(message)

    def kg(self, grams: int | Decimal | None) -> str:
        if grams is None:
            return "-"
        return format_decimal(Decimal(grams) / 1000, "#,##0.000", locale=self.locale)

    def number(self, value: str | Decimal, digits: int = 2) -> str:
        pattern = "#,##0." + "0" * digits if digits else "#,##0"
        return format_decimal(Decimal(value), pattern, locale=self.locale)

    def percent(self, value: str | Decimal) -> str:
        return format_decimal(Decimal(value), "#,##0.##", locale=self.locale)

    def time(self, ts: float, tz: tzinfo) -> str:
        return format_time(datetime.fromtimestamp(ts, tz), "HH:mm", locale=self.locale)
