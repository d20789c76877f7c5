"""Personal data out of free text before it is made public.

``scrub_public(text)`` is the one function every publishing path calls (the anonymous feedback
board today). The original stays in the database for whoever handles the report; only the copy
shown to the public is masked.

What counts as personal: runs of digits that look like an ID number (18 digits, or 17 and an
X; the old 15-digit ones), a mainland mobile (with or without +86/0086, spaces or hyphens in
any grouping), a landline with its area code, a bank card (16–19 digits), and e-mail
addresses. Any other run of 11 or more digits is masked too: a long number in a complaint is
far more often an account, card or certificate number than something the public needs, and a
wrong mask costs nothing while a missed one can't be taken back. ``\\d`` matches full-width
digits (１３８…) as well, which phone keyboards produce.
"""

from __future__ import annotations

import re

# A digit run: digits with at most one separator (space, hyphen, dash) between any two, an
# optional trailing X (ID numbers), an optional country code in front (mobiles). A digit right
# before or after means the run goes on, so a run is always taken whole.
_SEP = r"[ \t\u3000\-\uFF0D\u2010-\u2014]"
_RUN = re.compile(
    rf"(?<!\d)(?P<cc>(?:\+|\uFF0B|00)?86{_SEP}?)?"
    rf"(?P<digits>\d(?:{_SEP}?\d){{6,}})(?P<x>{_SEP}?[Xx\uFF38\uFF58])?(?!\d)"
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# A local number of 7-8 digits is only personal next to its area code in brackets or after a
# word that says it is a phone: alone it is as likely an amount or a count.
_LOCAL = re.compile(
    r"(?:[(\uFF08]0\d{2,3}[)\uFF09]|(?:电话|手机|座机|联系方式|tel|Tel|TEL)[:：\s号码是为]{0,4})"
    r"\s?(?P<digits>\d{3,4}[ \-]?\d{4})(?![\d*]|[ \-]\d)")


def _mask_digits(run: str, keep_head: int, keep_tail: int) -> str:
    """Star the digits of ``run`` except the first and last few; separators stay, so the
    masked number reads like the one typed."""
    total = sum(ch.isdigit() for ch in run)
    seen = 0
    out = []
    for ch in run:
        if ch.isdigit():
            seen += 1
            out.append(ch if seen <= keep_head or seen > total - keep_tail else "*")
        else:
            out.append(ch)
    return "".join(out)


def _mask_run(m: re.Match[str]) -> str:
    cc, run, x = m.group("cc") or "", m.group("digits"), m.group("x") or ""
    digits = "".join(str(int(ch)) for ch in run if ch.isdigit())  # full-width to ASCII
    n = len(digits)
    if x and n == 17:
        # An ID number ending in X: first 4 and last 4 (X included) kept, as identity's mask.
        return cc + _mask_digits(run, 4, 3) + x
    if cc and n == 11 and digits[0] == "1":
        masked = _mask_digits(run, 3, 4)  # +86 138****5678
    elif n in (15, 18):
        masked = _mask_digits(run, 4, 4)  # ID numbers, old and new: 6210**********0316
    elif n == 11 and digits[0] == "1":
        masked = _mask_digits(run, 3, 4)  # mobile: 138****5678
    elif digits[0] == "0" and 10 <= n <= 12:
        masked = _mask_digits(run, 4, 2)  # landline with area code: 0934-*****45
    elif n >= 11:
        masked = _mask_digits(run, 0, 4)  # bank cards (16-19) and any other long number
    else:
        return m.group(0)  # dates, amounts, short numbers: not personal
    return cc + masked + x


def _mask_local(m: re.Match[str]) -> str:
    start, end = m.span("digits")
    whole = m.group(0)
    offset = m.start()
    return whole[: start - offset] + _mask_digits(m.group("digits"), 0, 2) + whole[end - offset:]


def _mask_email(m: re.Match[str]) -> str:
    local, _, domain = m.group(0).partition("@")
    return f"{local[:1]}***@{domain}"


def scrub_public(text: str) -> str:
    """``text`` with ID numbers, phones, bank cards and e-mail addresses masked."""
    if not text:
        return text
    # Local numbers first: the long-run masks leave digit pieces a later pass could misread.
    return _RUN.sub(_mask_run, _LOCAL.sub(_mask_local, _EMAIL.sub(_mask_email, text)))
