"""精准导办 search bench: accuracy on seed/search_queries.json and speed at city scale.

Run: ``python -m bench.search_bench`` from the repo root. Prints figures only; it asserts
nothing about speed (machines differ). The accuracy floor lives in tests/unit/test_search.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.search import (
    _CUT_CACHE,
    SearchDoc,
    SearchIndex,
    _han_pinyin,
    _han_readings,
    _tokenizer,
    docs_from_catalogue,
)

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "seed" / "qingyang_demo.json"
QUERIES = ROOT / "seed" / "search_queries.json"
SYNTH_SIZE = 5000

COUNTIES: tuple[tuple[str, str], ...] = (
    ("西峰区", "XF"),
    ("庆城县", "QC"),
    ("环县", "HX"),
    ("华池县", "HC"),
    ("合水县", "HS"),
    ("正宁县", "ZN"),
    ("宁县", "NX"),
    ("镇原县", "ZY"),
)


def _words(block: str) -> tuple[str, ...]:
    """Whitespace-separated data block -> tuple (keeps long Chinese word lists compact)."""
    return tuple(block.split())


# County catalogues repeat city items, often with a delivery-mode suffix.
VARIANT_SUFFIXES = ("", "(跨省通办)", "(全程网办)", "(告知承诺制)", "(容缺受理)", "(延续)")
# Noise: plausible 事项 that are NOT in the query set, so they compete for bigrams like 登记/许可.
NOISE_SUBJECTS = _words(
    """
    农药经营 种子生产经营 兽药经营 林木采伐 取水 排污 建筑垃圾处置 户外广告设置 占道经营 燃气经营
    烟花爆竹经营 旅馆业特种行业 娱乐场所 出版物零售 互联网上网服务营业场所 民办学校 医疗机构执业
    护士执业 母婴保健技术服务 放射诊疗 公共场所卫生 生活饮用水卫生 特种设备使用 计量器具型式
    食品生产 粮食收购 拖拉机和联合收割机驾驶证 渔业捕捞 动物防疫条件合格证 生猪定点屠宰 河道采砂
    水土保持方案 地质灾害危险性评估 临时用地 乡村建设规划许可证 人防工程 消防设计审查
    城市绿地占用 城市道路挖掘 公墓建设 宗教活动场所 社会团体成立 民办非企业单位成立 慈善组织认定
    养老机构备案 殡葬服务 劳务派遣经营 人力资源服务 职业技能等级认定 特种作业操作证 安全生产许可
    危险化学品经营 烟草专卖零售 酒类经营 成品油零售 二手车交易市场 机动车维修经营 出租汽车经营
    机动车驾驶员培训 船舶登记 文物保护单位修缮 档案查阅 统计调查项目 价格认定 政府采购供应商
    土地承包经营权 农村宅基地 农机购置补贴 耕地地力保护补贴 退耕还林补助 草原禁牧补助
    残疾儿童康复救助 临时救助 特困人员救助供养 孤儿基本生活费 困难群众取暖补贴 公证 司法鉴定
    人民调解 律师执业 教师资格认定 普通话水平测试 学籍转接 中小学生资助 生源地助学贷款
    退役士兵安置 烈士褒扬金 伤残抚恤 优抚对象医疗补助 义务兵家庭优待金 建设项目环境影响评价
    节能审查 固定资产投资项目核准 企业投资项目备案 外商投资企业设立 农民专业合作社设立
    个人独资企业设立 合伙企业设立 广告发布登记 商标质押 专利权质押
    """
)
NOISE_ACTIONS = _words(
    """
    许可 核发 备案 审批 登记 变更 注销 延续 补办 年检 认定 查询 申请 确认 审核 证明开具 资格审查
    补贴发放
    """
)
NOISE_DEPTS = _words(
    """
    农业农村局 林业和草原局 水务局 生态环境分局 城市管理局 文化和旅游局 卫生健康局 市场监督管理局
    交通运输局 自然资源局 民政局 人社局 司法局 教育局 退役军人事务局 发展和改革局 商务局
    应急管理局
    """
)


def load_queries(path: Path = QUERIES) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def holdout_digest(holdout: Sequence[Mapping[str, Any]]) -> str:
    blob = json.dumps(list(holdout), ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


Miss = tuple[str, list[str], list[str]]  # (query, acceptable codes, codes returned)


@dataclass
class Accuracy:
    n: int
    top1: float
    top3: float
    top1_misses: list[Miss]  # right answer in the top 3 but not first
    top3_misses: list[Miss]


def evaluate(
    index: SearchIndex,
    queries: Sequence[Mapping[str, Any]],
    base_code: Callable[[str], str] = lambda c: c,
    *,
    collapse: bool = False,
) -> Accuracy:
    """A hit = any acceptable code within the first k results.

    collapse: judge the first 3 *distinct* source items, as a UI that folds the 8 county copies
    of one 事项 into a single row would show them.
    """
    top1_misses: list[Miss] = []
    top3_misses: list[Miss] = []
    for q in queries:
        expect = set(q["expect"])
        got = [base_code(h.code) for h in index.search(q["q"], limit=100 if collapse else 3)]
        if collapse:
            got = list(dict.fromkeys(got))[:3]
        miss: Miss = (q["q"], sorted(expect), got)
        if not expect.intersection(got):
            top3_misses.append(miss)
        elif got[0] not in expect:
            top1_misses.append(miss)
    n = max(1, len(queries))
    return Accuracy(
        n=len(queries),
        top1=1 - (len(top1_misses) + len(top3_misses)) / n,
        top3=1 - len(top3_misses) / n,
        top1_misses=top1_misses,
        top3_misses=top3_misses,
    )


def report(title: str, results: Mapping[str, Accuracy]) -> None:
    print(f"\naccuracy ({title})")
    for label, acc in results.items():
        print(f"  {label:<8} n={acc.n:<4} top1={acc.top1:6.1%}  top3={acc.top3:6.1%}")
    for label, acc in results.items():
        for kind, misses in (("top-3", acc.top3_misses), ("top-1 only", acc.top1_misses)):
            if misses:
                print(f"  {label} {kind} misses: {len(misses)}")
            for q, expect, got in misses:
                print(f"    {q!r}: expected {expect}, got {got}")


def synth_catalogue(
    docs: Sequence[SearchDoc], size: int = SYNTH_SIZE, seed: int = 20240601
) -> tuple[list[SearchDoc], dict[str, str]]:
    """A ~city-sized catalogue: county variants of real items + plausible noise items.

    Returns (docs, synthetic code -> original code) so accuracy can also be read at scale.
    """
    rng = random.Random(seed)
    out = list(docs)
    origin = {d.code: d.code for d in docs}
    items = [d for d in docs if d.type == "item"]
    variants: list[SearchDoc] = []
    for d in items:
        for county, cc in COUNTIES:
            dept = county + d.department.removeprefix("市")
            for k, suffix in enumerate(VARIANT_SUFFIXES):
                code = f"{d.code}-{cc}{k}"
                kws = d.keywords if rng.random() < 0.5 else d.keywords[:1]
                variants.append(
                    SearchDoc("item", code, d.name + suffix, kws, d.theme, dept, county)
                )
                origin[code] = d.code
    rng.shuffle(variants)
    out.extend(variants[: max(0, size - len(out)) * 3 // 5])
    n = 0
    while len(out) < size:
        n += 1
        subject = rng.choice(NOISE_SUBJECTS)
        county = rng.choice(COUNTIES)[0]
        name = subject + rng.choice(NOISE_ACTIONS)
        dept = county + rng.choice(NOISE_DEPTS)
        kws = (subject,) if rng.random() < 0.4 else ()
        out.append(SearchDoc("item", f"NZ-{n:05d}", name, kws, "其他", dept, county))
    return out, origin


def percentile(values: Sequence[float], pct: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--size", type=int, default=SYNTH_SIZE,
        help=f"synthetic catalogue size (default {SYNTH_SIZE}; a province is ~50000)",
    )
    args = parser.parse_args(argv)
    with CATALOGUE.open(encoding="utf-8") as fh:
        catalogue = json.load(fh)
    qs = load_queries()
    tune, holdout = qs["tune"], qs["holdout"]
    digest_ok = holdout_digest(holdout) == qs.get("holdout_sha256")
    print(f"holdout digest {'OK (unchanged)' if digest_ok else 'MISMATCH: holdout was edited'}")

    t0 = time.perf_counter()
    _tokenizer()
    print(f"jieba dictionary load: {time.perf_counter() - t0:.2f} s (once per process)")

    docs = docs_from_catalogue(catalogue)
    t0 = time.perf_counter()
    index = SearchIndex.build(docs)
    print(f"demo catalogue: {len(docs)} docs, build {1000 * (time.perf_counter() - t0):.0f} ms")

    report("demo catalogue", {"tune": evaluate(index, tune), "holdout": evaluate(index, holdout)})

    big, origin = synth_catalogue(docs, size=args.size)
    t0, c0 = time.perf_counter(), time.process_time()
    big_index = SearchIndex.build(big)
    build_s, build_cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"\nsynthetic catalogue: {len(big)} docs, build {build_s:.2f} s "
        f"({build_cpu:.2f} s CPU; on a shared machine CPU is the steadier figure)"
    )

    all_q = [q["q"] for q in (*tune, *holdout)]
    # Cold: first sight of each query (process-wide pinyin caches and the index's phrase cache
    # emptied). Warm: repeats, as a live server sees for popular queries.
    _han_pinyin.cache_clear()
    _han_readings.cache_clear()
    _CUT_CACHE.clear()
    cold = [timed_search(big_index, q) for q in all_q]
    warm = [timed_search(big_index, q) for _ in range(5) for q in all_q]
    for label, pairs in (("cold", cold), ("warm", warm)):
        for clock, timings in (("wall", [w for w, _ in pairs]), ("CPU", [c for _, c in pairs])):
            print(
                f"latency {label} {clock:<4} ({len(timings)} searches, {len(big)} docs, ms): "
                f"p50={percentile(timings, 50):.2f}  p95={percentile(timings, 95):.2f}  "
                f"p99={percentile(timings, 99):.2f}  max={max(timings):.2f}  "
                f"mean={statistics.fmean(timings):.2f}"
            )

    def to_origin(code: str) -> str:
        return origin.get(code, code)

    for collapse, note in ((False, "raw top-3"), (True, "county copies folded into one row")):
        report(
            f"synthetic {len(big)} docs, a county copy counts as its source item; {note}",
            {
                "tune": evaluate(big_index, tune, to_origin, collapse=collapse),
                "holdout": evaluate(big_index, holdout, to_origin, collapse=collapse),
            },
        )


def timed_search(index: SearchIndex, query: str) -> tuple[float, float]:
    """(wall, CPU) milliseconds of one search; CPU excludes time other processes took."""
    t0, c0 = time.perf_counter(), time.thread_time()
    index.search(query, limit=10)
    return 1000 * (time.perf_counter() - t0), 1000 * (time.thread_time() - c0)


if __name__ == "__main__":
    main()
