"""The public-text scrubber: each shape of personal number is masked, ordinary numbers are not."""

from __future__ import annotations

import pytest

from services.scrub import scrub_public


@pytest.mark.parametrize(("typed", "shown"), [
    ("身份证621002194103050316。", "身份证6210**********0316。"),
    ("身份证62100219410305031X", "身份证6210**********031X"),
    ("身份证 6210 0219 4103 0503 16", "身份证 6210 **** **** **03 16"),
    ("旧证621002410305031", "旧证6210*******5031"),
    ("手机13812345678", "手机138****5678"),
    ("手机138-1234-5678", "手机138-****-5678"),
    ("手机 +86 138 1234 5678", "手机 +86 138 **** 5678"),
    ("手机+8613812345678", "手机+86138****5678"),
    ("手机008613812345678", "手机0086138****5678"),
    ("手机１３８１２３４５６７８", "手机１３８****５６７８"),
    ("座机0934-8212345", "座机0934-*****45"),
    ("座机（0934）8212345", "座机（0934）*****45"),
    ("联系电话：8212345", "联系电话：*****45"),
    ("卡号6222021234567890123", "卡号***************0123"),
    ("卡号6222 0212 3456 7890", "卡号**** **** **** 7890"),
    ("邮箱zhang.san@qq.com", "邮箱z***@qq.com"),
])
def test_personal_numbers_are_masked(typed: str, shown: str) -> None:
    assert scrub_public(typed) == shown


@pytest.mark.parametrize("text", [
    "2026-12-02 14:30 在西峰区政务大厅办理，费用 12,000 元，等了 45 分钟",
    "拨打 12345 热线，排在第 8212345 号",  # a long count with no phone word stays
    "２０２６年１２月２日",
    "",
])
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert scrub_public(text) == text


@pytest.mark.parametrize(("typed", "shown"), [
    ("我叫张建国，电话13812345678", "我叫*建国，电话138****5678"),
    ("联系人：李秀兰，住西峰区长庆路12号3号楼2单元501室", "联系人：*秀兰，住西峰区长庆路****"),
    ("家住长庆小区东区3号楼", "家住长庆小区****"),
    ("我的名字是欧阳明月", "我的名字是*阳明月"),
    ("老人王小明今年85岁", "老人*小明今年85岁"),
    ("地址长庆路12-3-501", "地址长庆路****"),
    ("驿马镇三里店村二组", "驿马镇三里店村****"),
])
def test_names_and_household_addresses_are_masked(typed: str, shown: str) -> None:
    assert scrub_public(typed) == shown


@pytest.mark.parametrize("text", [
    "本人今天去办事，5月3号在3号窗口等了很久",
    "我是来办理营业执照的",
    "长庆路的大厅很好找",
])
def test_cue_words_without_a_name_or_door_stay(text: str) -> None:
    assert scrub_public(text) == text


def test_known_names_are_masked_wherever_they_appear() -> None:
    shown = scrub_public("张建国来办事，张建国很着急", names=["张建国", ""])
    assert shown == "*建国来办事，*建国很着急"
