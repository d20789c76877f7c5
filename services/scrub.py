"""Personal data out of free text shown to anyone but its author.

``scrub_public(text, names=...)`` is the one function every such path calls: the public
feedback board, and the staff and helper views of what residents wrote or what was written
about them (complaints and replies, rating comments, 回访 notes, help notes, case timeline
notes). The original stays in the database for its author, and for staff through an audited
reveal where one exists; only the copy shown is masked.

What counts as personal: runs of digits that look like an ID number (18 digits, or 17 and an
X; the old 15-digit ones), a mainland mobile (with or without +86/0086, spaces or hyphens in
any grouping), a landline with its area code, a bank card (16–19 digits), and e-mail
addresses; names said to be names ("我叫张建国", "联系人：李秀兰") or known to belong to the
people concerned (``names``, e.g. the author's) → ``*建国``, as ``identity.mask_name``; the
household part of an address (building, unit, door, village group after a street or community
word: "长庆路12号3号楼501室" → "长庆路****"), cut where ``identity.mask_address`` cuts. Any
other run of 11 or more digits is masked too: a long number in a complaint is
far more often an account, card or certificate number than something the public needs, and a
wrong mask costs nothing while a missed one can't be taken back. ``\\d`` matches full-width
digits (１３８…) as well, which phone keyboards produce.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from services.identity import ADDRESS_AREA, ADDRESS_DOOR, mask_name

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


# The door after a street or community word; the area word stays so the text still says where.
_ADDRESS = re.compile(rf"(?P<area>{ADDRESS_AREA})\s?(?P<door>{ADDRESS_DOOR})")

# A name is recognised where the text says it is one: after a cue, starting with a common
# surname (the list keeps "本人今天去办事" from being read as a name), one or two given-name
# characters that are not the start of what usually follows a name in a complaint.
_SURNAMES = ("欧阳|司马|上官|诸葛|东方|皇甫|尉迟|慕容|令狐|夏侯|司徒|"
             "[王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡"
             "余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯"
             "龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章"
             "鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉"
             "骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦"
             "戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄"
             "丛仲虞敖巩明佘池查麻苑迟邝]")
_CUE = (r"(?:我叫|我的名字[是叫]|名字[是叫]|姓名[是为:：\s]{0,2}|本人[是:：\s]?|"
        r"联系人[是:：\s]?|申请人[是:：\s]?|户主[是:：\s]?|老人|家属|患者|当事人[是:：\s]?)")
_NOT_NAME = r"(?!电话|手机|身份|住在|家住|联系|今天|昨天|来自|在|于|是|的|去|到|和|与|今年)"
_NAME = re.compile(
    rf"(?P<cue>{_CUE})(?P<name>(?:{_SURNAMES})(?:{_NOT_NAME}[\u4e00-\u9fff]){{1,2}})")


def _mask_cued_name(m: re.Match[str]) -> str:
    return m.group("cue") + mask_name(m.group("name"))


def _mask_known_names(text: str, names: Iterable[str]) -> str:
    # Longest first, so "张建国" is masked whole before a shorter "张建" could split it.
    for name in sorted({n.strip() for n in names if n and len(n.strip()) >= 2}, key=len,
                       reverse=True):
        text = text.replace(name, mask_name(name))
    return text


def _mask_address(m: re.Match[str]) -> str:
    return m.group(0)[: m.end("area") - m.start()] + "****"


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


def scrub_public(text: str, *, names: Iterable[str] = ()) -> str:
    """``text`` with ID numbers, phones, bank cards, e-mail addresses, names (cued, or among
    ``names``) and the household part of addresses masked."""
    if not text:
        return text
    text = _NAME.sub(_mask_cued_name, _mask_known_names(text, names))
    # Addresses before numbers: a door number is short, but "12-3-501" would read as digits.
    # Local numbers before long runs: the long-run masks leave pieces a later pass could misread.
    text = _ADDRESS.sub(_mask_address, text)
    return _RUN.sub(_mask_run, _LOCAL.sub(_mask_local, _EMAIL.sub(_mask_email, text)))
