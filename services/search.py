"""精准导办 search engine: ranks 事项 (items) and 一件事 (bundles) for colloquial queries.

Pure Python, in memory, no DB. Build once per catalogue version, then call ``search`` from any
number of threads (the index is read-only after ``build``).

Pipeline (see docs/search.md):
  query -> normalise -> intents/bundle cues -> strip fillers -> synonyms -> jieba tokens
        -> homophone correction (pinyin lookup in the catalogue vocabulary)
        -> latin runs: full pinyin / initials -> weighted query terms
  candidates = inverted index (word, char bigram, pinyin-syllable bigram, initials bigram)
  score = BM25F over fields (name > keywords > theme/department > extra)
        + rapidfuzz partial_ratio bonus on the top candidates + bundle boost for 一件事 intents.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import jieba
import numpy as np
import numpy.typing as npt
from pypinyin import Style, lazy_pinyin, pinyin
from rapidfuzz import fuzz, process

logger = logging.getLogger(__name__)

DEFAULT_LEXICON_PATH = Path(__file__).resolve().parents[1] / "seed" / "search_synonyms.json"
MAX_QUERY_CHARS = 100
MAX_LIMIT = 100

# --- ranking constants (tuned on the "tune" query set only; see docs/search.md) -------------
# (field, weight, BM25 length-normalisation b). Short official names get the most weight;
# keywords are curated colloquial aliases; theme/department are broad; extra is free text.
_FIELDS: tuple[tuple[str, float, float], ...] = (
    ("name", 3.0, 0.5),
    ("keywords", 2.0, 0.3),
    ("theme", 0.6, 0.0),
    ("department", 0.6, 0.0),
    ("extra", 0.5, 0.5),
)
_K1 = 1.2
# Relative weight of each query-term source. Bigrams and pinyin bigrams restate the same text
# as the words, so they are damped to avoid counting one concept three times at full weight.
_W_WORD = 1.0
_W_SINGLE_CHAR = 0.5  # single-char tokens (证, 房) carry meaning but are ambiguous
_W_BIGRAM = 0.5
_W_PINYIN = 0.35
_W_PINYIN_LATIN = 1.0  # for a pinyin-typed query the syllables ARE the signal
_W_SYNONYM = 0.8
_W_INTENT = 0.6
_W_HOMOPHONE_LONG = 0.9  # a 3+ char window that sounds exactly like a catalogue term
_W_HOMOPHONE_2 = 0.7  # 2-char homophones are common in Chinese, trust them less
_W_INITIALS_TERM = 0.5
# Expansions (synonym/intent/correction) are official phrases: "食品经营许可" should reward docs
# containing the whole phrase, not every doc with 经营 or 许可. So an expansion scores as a
# contiguous phrase match, plus its words at a damped weight.
_W_PHRASE = 1.5
_W_EXPANSION_WORDS = 0.5
_PHRASE_CACHE_SIZE = 4096
# Char unigrams are consulted ONLY when nothing else matched ("名下有几套房" shares no word or
# bigram with 查房产/房产证明): a weak answer beats an empty page, and because the fallback never
# runs when any other channel hits, it cannot disturb the normal ranking.
_W_UNIGRAM_FALLBACK = 0.5
_INITIALS_SCORE = 3.0  # per unit field weight, for an initials substring hit
_FUZZ_W = 0.3  # max fuzzy bonus as a fraction of the best base score
_EXACT_W = 0.3  # bonus when the cleaned query equals a name/keyword
_BUNDLE_BOOST = 1.3
_RERANK_POOL = 60
_MIN_RELATIVE = 0.12  # drop the long tail below this fraction of the best score
_MAX_PHRASE = 12  # longest catalogue phrase that can block a nested synonym match

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_TOKEN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[a-z]+|[0-9]+")
# Measure words after a verb ("开个饭店", "注册一家公司") break synonym/keyword matches. Bare 家
# is left alone (开家政公司) and 个 before 体/人/税/性 is a word (开个体户 = 个体户).
_MEASURE_RE = re.compile(r"(?<=[开办弄搞买租申注册领])(?:一个|一家|个(?![体人税性]))")
_VOWELS = frozenset("aeiouv")


# --- public data types -----------------------------------------------------------------------
@dataclass(frozen=True)
class SearchDoc:
    type: Literal["item", "bundle"]
    code: str
    name: str
    keywords: tuple[str, ...] = ()
    theme: str = ""
    department: str = ""
    extra: str = ""  # free text, e.g. member item names of a bundle


@dataclass(frozen=True)
class SearchHit:
    type: str
    code: str
    name: str
    score: float


# --- lexicon (seed/search_synonyms.json) -----------------------------------------------------
@dataclass(frozen=True)
class Lexicon:
    fillers: tuple[str, ...] = ()
    stop_tokens: frozenset[str] = frozenset()
    bundle_cues: tuple[str, ...] = ()
    intents: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    synonyms: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> Lexicon:
        def words(key: str) -> list[str]:
            return [w for w in (normalize(str(x)) for x in raw.get(key, ())) if w]

        def table(key: str) -> dict[str, tuple[str, ...]]:
            out: dict[str, tuple[str, ...]] = {}
            for k, vals in dict(raw.get(key, {})).items():
                nk = normalize(str(k))
                nv = tuple(v for v in (normalize(str(x)) for x in vals) if v and v != nk)
                if nk:
                    out[nk] = tuple(dict.fromkeys(out.get(nk, ()) + nv))
            return out

        # Longest first so "怎么办理" is removed before "怎么" would leave a dangling "办理".
        fillers = tuple(sorted(set(words("fillers")), key=len, reverse=True))
        return cls(
            fillers=fillers,
            stop_tokens=frozenset(words("stop_tokens")),
            bundle_cues=tuple(words("bundle_cues")),
            intents=table("intents"),
            synonyms=table("synonyms"),
        )

    def all_terms(self) -> set[str]:
        out: set[str] = set()
        for tab in (self.intents, self.synonyms):
            for k, vals in tab.items():
                out.add(k)
                out.update(vals)
        return out


_LEXICON_CACHE: dict[tuple[str, float], Lexicon] = {}


def load_lexicon(path: Path | str | None = None) -> Lexicon:
    """Load the synonyms JSON; cached per (path, mtime) so edits are picked up on rebuild."""
    p = Path(path) if path is not None else DEFAULT_LEXICON_PATH
    key = (str(p), p.stat().st_mtime)
    lex = _LEXICON_CACHE.get(key)
    if lex is None:
        with p.open(encoding="utf-8") as fh:
            lex = Lexicon.from_mapping(json.load(fh))
        _LEXICON_CACHE[key] = lex
    return lex


# --- text helpers ----------------------------------------------------------------------------
def normalize(text: str) -> str:
    """NFKC + lowercase; keep only Han, ascii letters and digits (everything else -> space).

    Emoji, punctuation, control chars and full-width forms all collapse here, which is what
    makes arbitrary unicode input safe for the rest of the pipeline.
    """
    text = unicodedata.normalize("NFKC", text).lower()
    chars = [ch if (ch.isascii() and ch.isalnum()) or _HAN.match(ch) else " " for ch in text]
    return " ".join("".join(chars).split())


@lru_cache(maxsize=65536)
def _han_pinyin(run: str) -> tuple[str, ...]:
    """Canonical tone-less pinyin, one syllable per Han char (phrase-aware via lazy_pinyin)."""
    syl = lazy_pinyin(run, style=Style.NORMAL, errors="ignore")
    if len(syl) == len(run):
        return tuple(syl)
    # Rare chars without pinyin data: fall back per char so positions stay aligned.
    out: list[str] = []
    for ch in run:
        one = lazy_pinyin(ch, style=Style.NORMAL, errors="ignore")
        out.append(one[0] if one else "?")
    return tuple(out)


@lru_cache(maxsize=8192)
def _han_readings(run: str) -> tuple[tuple[str, ...], ...]:
    """All readings per char, canonical first (heteronym-safe homophone matching).

    A typo char picked by an IME for sound X may be a heteronym whose default reading is Y
    (e.g. 行 typed for "hang"); matching on every reading avoids missing it.
    """
    canon = _han_pinyin(run)
    alts = pinyin(run, style=Style.NORMAL, heteronym=True, errors="ignore")
    out: list[tuple[str, ...]] = []
    for i, c in enumerate(canon):
        extra = alts[i] if len(alts) == len(run) else []
        out.append(tuple(dict.fromkeys([c, *extra]))[:3])
    return tuple(out)


# Tone marks -> plain letters (ü -> v, as pypinyin's NORMAL style writes it). A translate table
# does in one C call what pypinyin's style converters do with several regexes per syllable.
_TONELESS = str.maketrans(
    {
        **{m: base for base, marks in (("a", "āáǎà"), ("e", "ēéěèê"), ("i", "īíǐì"),
                                       ("o", "ōóǒò"), ("u", "ūúǔù"), ("v", "ǖǘǚǜü"))
           for m in marks},
        **{m: "n" for m in "ńňǹ"},
        "ḿ": "m",
    }
)


@lru_cache(maxsize=1)
def _syllables() -> frozenset[str]:
    """Every tone-less pinyin syllable with a vowel (excludes m/n/ng/hm interjections).

    Built once per process from pypinyin's dictionary; ``SearchIndex.build`` warms it so no
    query pays for it.
    """
    from pypinyin.pinyin_dict import pinyin_dict

    out: set[str] = set()
    for val in pinyin_dict.values():
        for p in val.split(","):
            s = p.translate(_TONELESS)
            if s.isascii() and s.isalpha() and _VOWELS.intersection(s):
                out.add(s)
    return frozenset(out)


# jieba: one private Tokenizer (the global jieba dictionary may be used by other modules),
# loaded lazily because building its prefix dict costs ~1 s.
_JIEBA_LOCK = threading.Lock()
_JIEBA: Any = None
_JIEBA_WORDS: set[str] = set()
# Catalogues repeat the same names per county, so segmentation is memoised. The memo is
# emptied whenever the dictionary gains words, as earlier cuts may then be stale.
_CUT_CACHE: dict[str, tuple[str, ...]] = {}
_CUT_CACHE_SIZE = 100_000


def _tokenizer() -> Any:
    global _JIEBA
    with _JIEBA_LOCK:
        if _JIEBA is None:
            jieba.setLogLevel(logging.WARNING)
            tk = jieba.Tokenizer()
            tk.initialize()
            _JIEBA = tk
        return _JIEBA


def _add_jieba_words(words: Iterable[str]) -> None:
    """Teach jieba catalogue terms so e.g. 社保卡 / 残疾证 stay one token."""
    tk = _tokenizer()
    with _JIEBA_LOCK:
        for w in words:
            if 2 <= len(w) <= 8 and w not in _JIEBA_WORDS and _HAN.fullmatch(w):
                tk.add_word(w)  # freq=None -> jieba suggests a freq high enough to keep it whole
                _JIEBA_WORDS.add(w)
                _CUT_CACHE.clear()


def _cut(text: str) -> list[str]:
    """Coarse jieba tokens (a partition of the text, so they can be re-joined)."""
    cached = _CUT_CACHE.get(text)
    if cached is None:
        # HMM=False: HMM "new word" discovery glues unrelated chars (证新办) into junk tokens.
        cached = tuple(t for t in _tokenizer().lcut(text, HMM=False) if t.strip())
        if len(_CUT_CACHE) >= _CUT_CACHE_SIZE:
            _CUT_CACHE.clear()
        _CUT_CACHE[text] = cached
    return list(cached)


def _subwords(token: str) -> list[str]:
    """The token plus its dictionary 2/3-char sub-words (what jieba's cut_for_search emits).

    Done per coarse token (rather than calling cut_for_search on the text) so stop-token
    filtering and query reconstruction work on the coarse partition.
    """
    if len(token) <= 2:
        return [token]
    freq = _tokenizer().FREQ
    out = [token[i : i + n] for n in (2, 3) for i in range(len(token) - n + 1)]
    return [w for w in out if freq.get(w)] + [token]


def _bigrams(run: Sequence[str], sep: str = "") -> Iterator[str]:
    for i in range(len(run) - 1):
        yield f"{run[i]}{sep}{run[i + 1]}"


def _text_terms(text: str, stop: frozenset[str], *, with_pinyin: bool) -> Counter[str]:
    """Namespaced index terms of a (normalised) text.

    w:word, b:char-bigram, p:syllable-bigram, u:char-unigram (zero-result fallback only).
    """
    terms: Counter[str] = Counter()
    for piece in text.split():
        for tok in _cut(piece):
            if tok not in stop:
                terms.update("w:" + w for w in _subwords(tok))
        for run in _HAN.findall(piece):
            terms.update("b:" + bg for bg in _bigrams(run))
            terms.update("u:" + ch for ch in run if ch not in stop)
            if with_pinyin:
                terms.update("p:" + bg for bg in _bigrams(_han_pinyin(run), "_"))
    return terms


def _initials(text: str) -> str:
    """First letters of the pinyin of Han chars (社保卡 -> sbk); ascii letters kept as-is."""
    out: list[str] = []
    for m in _TOKEN_RE.finditer(text):
        tok = m.group()
        if _HAN.match(tok):
            out.extend(s[0] for s in _han_pinyin(tok) if s and s != "?")
        elif tok.isalpha():
            out.append(tok)
    return "".join(out)


def _pinyin_joined(text: str) -> str:
    out: list[str] = []
    for m in _TOKEN_RE.finditer(text):
        tok = m.group()
        out.extend(_han_pinyin(tok) if _HAN.match(tok) else [tok])
    return "".join(out)


# --- query analysis --------------------------------------------------------------------------
@dataclass
class _Query:
    core: str = ""  # cleaned text used for fuzzy/exact matching
    core_alt: str = ""  # core with homophone corrections applied
    latin: str = ""  # letters of pinyin/initials runs, for pinyin fuzzy matching
    bundle_cue: bool = False
    terms: dict[str, float] = field(default_factory=dict)
    phrases: dict[str, float] = field(default_factory=dict)
    initials: list[str] = field(default_factory=list)

    def add(self, term: str, weight: float) -> None:
        # max, not sum: the same term reached via several expansions is still one concept
        if weight > self.terms.get(term, 0.0):
            self.terms[term] = weight

    def add_phrase(self, phrase: str, weight: float) -> None:
        if len(phrase) >= 2 and weight > self.phrases.get(phrase, 0.0):
            self.phrases[phrase] = weight


def _non_overlapping(
    text: str, keys: Iterable[str], blockers: frozenset[str] = frozenset()
) -> list[str]:
    """Keys occurring in text, dropping any match nested inside a longer match.

    Longest match wins: "社保卡" must not also fire "社保" (which would pull in every
    参保登记 item), "退休工资" must not also fire "退休". A match nested inside a longer
    catalogue phrase (blockers: names/keywords) is dropped too: a user who typed the official
    "就业失业登记" should not get the 失业 -> 失业保险金 expansion.
    """
    spans: list[tuple[int, int, str]] = []
    for k in keys:
        start = text.find(k)
        while start != -1:
            spans.append((start, start + len(k), k))
            start = text.find(k, start + 1)
    kept: list[str] = []
    for s0, s1, k in spans:
        if any(o0 <= s0 and s1 <= o1 and (o1 - o0) > (s1 - s0) for o0, o1, _ in spans):
            continue
        if blockers and _inside_phrase(text, s0, s1, blockers):
            continue
        kept.append(k)
    return list(dict.fromkeys(kept))


def _inside_phrase(text: str, s0: int, s1: int, phrases: frozenset[str]) -> bool:
    for a in range(max(0, s1 - _MAX_PHRASE), s0 + 1):
        for b in range(s1, min(len(text), a + _MAX_PHRASE) + 1):
            if (b - a) > (s1 - s0) and text[a:b] in phrases:
                return True
    return False


# --- the index -------------------------------------------------------------------------------
# A posting list: doc ids (ascending) and each doc's BM25F contribution, as parallel arrays so a
# query adds a whole list into its score vector in one vectorised step.
_Postings = tuple["npt.NDArray[np.int32]", "npt.NDArray[np.float64]"]
_EMPTY_IDS: npt.NDArray[np.int32] = np.zeros(0, dtype=np.int32)
_EMPTY_POSTINGS: _Postings = (_EMPTY_IDS, np.zeros(0, dtype=np.float64))


class _Interner:
    """Distinct values get small ids: county copies repeat the same texts, so everything derived
    from a text (terms, initials, pinyin) is computed once per distinct text, not once per doc."""

    def __init__(self) -> None:
        self.ids: dict[Any, int] = {}
        self.values: list[Any] = []

    def __call__(self, value: Any) -> int:
        i = self.ids.get(value)
        if i is None:
            i = self.ids[value] = len(self.values)
            self.values.append(value)
        return i


class SearchIndex:
    """Immutable inverted index over SearchDocs. Build with ``SearchIndex.build(docs)``."""

    def __init__(self) -> None:
        self._docs: list[SearchDoc] = []
        self._lex = Lexicon()
        self._postings: dict[str, _Postings] = {}
        self._types: npt.NDArray[np.str_] = np.zeros(0, dtype=np.str_)
        self._vocab: frozenset[str] = frozenset()
        self._phrases: frozenset[str] = frozenset()  # whole names/keywords, synonym blockers
        self._curated: frozenset[str] = frozenset()  # keywords + lexicon terms
        self._py_map: dict[str, tuple[str, ...]] = {}  # joined pinyin -> catalogue terms
        self._py_syl: dict[str, tuple[str, ...]] = {}  # joined pinyin -> its syllables
        self._ini_map: dict[str, tuple[str, ...]] = {}  # initials -> catalogue terms
        # Initials units: distinct (field initials, field weight); the docs holding each unit;
        # bigram -> units, so a query's initials only ever look at the few units that match.
        self._ini_units: list[tuple[str, float]] = []
        self._ini_unit_docs: list[npt.NDArray[np.int32]] = []
        self._ini_index: dict[str, list[int]] = {}
        self._match_text: list[str] = []
        self._match_py: list[str] = []
        self._exact: list[frozenset[str]] = []
        # Phrase units: distinct (field, text) with the field's weight and the docs holding it;
        # bigram -> units, so a phrase is only tested against field texts that could hold it.
        self._phrase_units: list[tuple[str, float]] = []
        self._phrase_unit_docs: list[npt.NDArray[np.int32]] = []
        self._phrase_index: dict[str, list[int]] = {}
        self._phrase_cache: dict[str, _Postings] = {}
        self._max_py_len = 0

    # ---- build ----
    @classmethod
    def build(cls, docs: Iterable[SearchDoc]) -> SearchIndex:
        self = cls()
        lex = load_lexicon()
        self._lex = lex
        self._docs = list(docs)
        self._types = np.array([d.type for d in self._docs], dtype=np.str_)
        stop = lex.stop_tokens
        _syllables()  # process-wide table the pinyin parser needs; not a first query's cost

        norm_cache: dict[str, str] = {}

        def norm(text: str) -> str:
            out = norm_cache.get(text)
            if out is None:
                out = norm_cache[text] = normalize(text)
            return out

        norm_fields: list[dict[str, tuple[str, ...]]] = [
            {
                "name": (norm(d.name),),
                "keywords": tuple(norm(k) for k in d.keywords),
                "theme": (norm(d.theme),),
                "department": (norm(d.department),),
                "extra": (norm(d.extra),),
            }
            for d in self._docs
        ]
        distinct_names_keywords = {
            t for nf in norm_fields for t in (*nf["name"], *nf["keywords"])
        }

        # Catalogue + lexicon vocabulary: jieba dictionary, homophone and pinyin lookups.
        vocab: set[str] = set(lex.all_terms())
        vocab.update(k.replace(" ", "") for nf in norm_fields for k in nf["keywords"])
        self._curated = frozenset(vocab)
        _add_jieba_words(sorted(vocab))  # before tokenising docs, so both sides agree
        for text in distinct_names_keywords:
            for tok in _cut(text):
                vocab.update(w for w in _subwords(tok) if len(w) >= 2 and _HAN.fullmatch(w))
        vocab = {v for v in vocab if _HAN.fullmatch(v)}
        self._vocab = frozenset(vocab)
        self._phrases = frozenset(
            t.replace(" ", "")
            for t in distinct_names_keywords
            if 3 <= len(t.replace(" ", "")) <= _MAX_PHRASE
        )
        py_map: dict[str, set[str]] = {}
        ini_map: dict[str, set[str]] = {}
        for term in vocab:
            syl = _han_pinyin(term)
            joined = "".join(syl)
            py_map.setdefault(joined, set()).add(term)
            self._py_syl[joined] = syl
            if len(term) >= 2:
                ini_map.setdefault("".join(s[0] for s in syl), set()).add(term)
        self._py_map = {k: tuple(sorted(v)) for k, v in py_map.items()}
        self._ini_map = {k: tuple(sorted(v)) for k, v in ini_map.items()}
        self._max_py_len = max((len(k) for k in self._py_map), default=0)

        self._build_postings(norm_fields, stop)
        self._build_matchers(norm_fields)
        return self

    def _build_postings(
        self, norm_fields: list[dict[str, tuple[str, ...]]], stop: frozenset[str]
    ) -> None:
        """BM25F: per-field term frequencies, length-normalised and weighted, summed per doc
        and term, then saturated once. A field's contribution depends only on its text, so it
        is computed per distinct (field, text) "unit" and the per-doc sums are vectorised."""
        n = len(self._docs)
        term_ids = _Interner()
        units = _Interner()  # (field name, joined text)
        doc_units = np.empty((n, len(_FIELDS)), dtype=np.int64)
        for doc_id, nf in enumerate(norm_fields):
            for f, (fname, _, _) in enumerate(_FIELDS):
                doc_units[doc_id, f] = units((fname, " ".join(nf[fname])))
        unit_len = np.array(
            [len(text.replace(" ", "")) for _, text in units.values], dtype=np.float64
        )
        # Average field length over docs (each doc's copy of a unit counts), as BM25F defines it.
        avg_len: dict[str, float] = {}
        for f, (fname, _, _) in enumerate(_FIELDS):
            copies = np.bincount(doc_units[:, f], minlength=len(unit_len))
            avg_len[fname] = max(1.0, float((unit_len * copies).sum()) / max(1, n))
        spec = {fname: (weight, b) for fname, weight, b in _FIELDS}
        unit_terms: list[npt.NDArray[np.int64]] = []
        unit_vals: list[npt.NDArray[np.float64]] = []
        for u, (fname, text) in enumerate(units.values):
            weight, b = spec[fname]
            tf = _text_terms(text, stop, with_pinyin=fname in ("name", "keywords"))
            norm = 1.0 - b + b * unit_len[u] / avg_len[fname]
            unit_terms.append(np.fromiter((term_ids(t) for t in tf), np.int64, len(tf)))
            unit_vals.append(
                np.fromiter((weight * c / norm for c in tf.values()), np.float64, len(tf))
            )
        sizes = np.array([len(t) for t in unit_terms], dtype=np.int64)
        flat_units = doc_units.ravel()
        per_doc_entries = sizes[flat_units]
        docs_col = np.repeat(np.repeat(np.arange(n, dtype=np.int64), len(_FIELDS)), per_doc_entries)
        if n:
            terms_col = np.concatenate([unit_terms[u] for u in flat_units])
            vals_col = np.concatenate([unit_vals[u] for u in flat_units])
        else:
            terms_col, vals_col = np.zeros(0, np.int64), np.zeros(0, np.float64)
        # A term in several fields of one doc: sum its pseudo-frequencies before saturating.
        n_terms = max(1, len(term_ids.values))
        keys = docs_col * n_terms + terms_col
        uniq, inverse = np.unique(keys, return_inverse=True)
        ptf = np.bincount(inverse, weights=vals_col, minlength=len(uniq))
        p_docs = (uniq // n_terms).astype(np.int32)
        p_terms = uniq % n_terms
        df = np.bincount(p_terms, minlength=n_terms).astype(np.float64)
        idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5))
        contrib = idf[p_terms] * ptf * (_K1 + 1) / (ptf + _K1)
        order = np.argsort(p_terms, kind="stable")  # keeps doc ids ascending within a term
        p_terms, p_docs, contrib = p_terms[order], p_docs[order], contrib[order]
        bounds = np.flatnonzero(np.diff(p_terms)) + 1
        starts = np.concatenate(([0], bounds)) if len(p_terms) else np.zeros(0, np.int64)
        ends = np.concatenate((bounds, [len(p_terms)])) if len(p_terms) else np.zeros(0, np.int64)
        names = term_ids.values
        self._postings = {
            names[int(p_terms[s])]: (p_docs[s:e], contrib[s:e])
            for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
        }

    def _build_matchers(self, norm_fields: list[dict[str, tuple[str, ...]]]) -> None:
        """Initials, fuzzy/exact match texts and phrase units, each per distinct text."""
        weights = {fname: w for fname, w, _ in _FIELDS}
        ini_units = _Interner()
        ini_docs: dict[int, list[int]] = {}
        initials_cache: dict[str, str] = {}
        pinyin_cache: dict[str, str] = {}
        phrase_units = _Interner()
        phrase_docs: dict[int, list[int]] = {}
        for doc_id, nf in enumerate(norm_fields):
            for fname in ("name", "keywords", "theme", "department"):
                for text in nf[fname]:
                    ini = initials_cache.get(text)
                    if ini is None:
                        ini = initials_cache[text] = _initials(text)
                    if len(ini) >= 2:
                        ini_docs.setdefault(ini_units((ini, weights[fname])), []).append(doc_id)
            texts = nf["name"] + nf["keywords"]
            self._match_text.append(" ".join(texts))
            joined_py = []
            for t in texts:
                py = pinyin_cache.get(t)
                if py is None:
                    py = pinyin_cache[t] = _pinyin_joined(t)
                joined_py.append(py)
            self._match_py.append(" ".join(joined_py))
            self._exact.append(frozenset(t.replace(" ", "") for t in texts if t))
            # "|" between keywords so a phrase cannot match across two keywords
            for fname, _, _ in _FIELDS:
                if any(nf[fname]):
                    text = "|".join(t.replace(" ", "") for t in nf[fname])
                    phrase_docs.setdefault(phrase_units((fname, text)), []).append(doc_id)
        self._ini_units = list(ini_units.values)
        self._ini_unit_docs = [
            np.array(ini_docs[u], dtype=np.int32) for u in range(len(self._ini_units))
        ]
        for u, (ini, _) in enumerate(self._ini_units):
            for bg in set(_bigrams(ini)):
                self._ini_index.setdefault(bg, []).append(u)
        self._phrase_units = [(text, weights[fname]) for fname, text in phrase_units.values]
        self._phrase_unit_docs = [
            np.array(phrase_docs[u], dtype=np.int32) for u in range(len(self._phrase_units))
        ]
        for u, (text, _) in enumerate(self._phrase_units):
            for bg in set(_bigrams(text)):
                self._phrase_index.setdefault(bg, []).append(u)

    def __len__(self) -> int:
        return len(self._docs)

    # ---- search ----
    def search(self, query: str, *, limit: int = 10, type: str | None = None) -> list[SearchHit]:
        """Ranked hits; [] for empty/overlong/meaningless queries. Never raises on input."""
        try:
            return self._search(query, limit=limit, type=type)
        except Exception:  # a search box must degrade to "no results", never to a 500
            logger.exception("search failed for query %r", query)
            return []

    def _search(self, query: str, *, limit: int, type: str | None) -> list[SearchHit]:
        if not isinstance(query, str) or limit <= 0 or not self._docs:
            return []
        stripped = query.strip()
        if not stripped or len(stripped) > MAX_QUERY_CHARS:
            return []
        q = self._analyze(stripped)
        if not q.terms and not q.phrases and not q.initials:
            return []
        limit = min(limit, MAX_LIMIT)

        # One score per doc, each posting list added in a single vectorised step: the cost of a
        # common term (登记, 许可 in every county copy) is a C loop, not a Python one per doc.
        scores = np.zeros(len(self._docs), dtype=np.float64)
        for term, qw in q.terms.items():
            ids, contrib = self._postings.get(term, _EMPTY_POSTINGS)
            scores[ids] += qw * contrib
        for phrase, qw in q.phrases.items():
            ids, contrib = self._phrase_hits(phrase)
            scores[ids] += (qw * _W_PHRASE) * contrib
        for ini in q.initials:
            self._score_initials(ini, scores)
        if type is not None:
            scores[self._types != type] = 0.0
        if not scores.any():
            scores = self._unigram_fallback(q.core_alt or q.core, type)
        pool = self._top(scores, _RERANK_POOL)
        if not pool:
            return []

        top_base = pool[0][1]
        final = dict(pool)
        self._fuzzy_bonus(q, [d for d, _ in pool], top_base, final)
        if q.bundle_cue:
            for d in final:
                if self._docs[d].type == "bundle":
                    final[d] *= _BUNDLE_BOOST

        ranked = sorted(final.items(), key=lambda kv: (-kv[1], self._docs[kv[0]].code))
        best = ranked[0][1]
        hits: list[SearchHit] = []
        for doc_id, score in ranked[:limit]:
            if score < best * _MIN_RELATIVE:
                break
            doc = self._docs[doc_id]
            hits.append(SearchHit(doc.type, doc.code, doc.name, round(score, 4)))
        return hits

    @staticmethod
    def _top(scores: npt.NDArray[np.float64], k: int) -> list[tuple[int, float]]:
        """The k best (doc, score) with a score, best first; equal scores in catalogue order."""
        cand = np.flatnonzero(scores > 0.0)
        if len(cand) > k:
            # argpartition finds the k-th best value; ties at that value go by doc id.
            kth = -np.partition(-scores[cand], k - 1)[k - 1]
            above = cand[scores[cand] > kth]
            at = cand[scores[cand] == kth][: k - len(above)]
            cand = np.concatenate((above, at))
        order = np.lexsort((cand, -scores[cand]))
        chosen = cand[order]
        return list(zip(chosen.tolist(), scores[chosen].tolist(), strict=True))

    # ---- query analysis ----
    def _analyze(self, raw: str) -> _Query:
        lex = self._lex
        q = _Query()
        text = normalize(raw)
        if not text:
            return q
        q.bundle_cue = any(c in text for c in lex.bundle_cues)
        for key in _non_overlapping(text, lex.intents):
            for exp in lex.intents[key]:
                self._add_text(q, exp, _W_INTENT)

        text = _MEASURE_RE.sub("", text)
        for filler in lex.fillers:
            text = text.replace(filler, " ")
        text = " ".join(text.split())

        han_parts: list[str] = []
        latin_parts: list[str] = []
        for tok in _TOKEN_RE.findall(text):
            if tok.isascii() and tok.isalpha():
                latin_parts.append(tok)
            else:
                han_parts.append(tok)
        han_text = " ".join(han_parts)

        kept: list[str] = []
        for piece in han_text.split():
            kept.extend(t for t in _cut(piece) if t not in lex.stop_tokens)
        core = "".join(kept)
        q.core = core
        for tok in kept:
            for w in _subwords(tok):
                q.add("w:" + w, _W_SINGLE_CHAR if len(w) == 1 else _W_WORD)
        for run in _HAN.findall(core):
            for bg in _bigrams(run):
                q.add("b:" + bg, _W_BIGRAM)
            for bg in _bigrams(_han_pinyin(run), "_"):
                q.add("p:" + bg, _W_PINYIN)
        for run in core.split():
            q.add_phrase(run, _W_WORD)  # the query itself, verbatim inside a name/keyword
        self._expand_synonyms(q, core, 1.0)

        corrected = self._correct_homophones(q, core)
        q.core_alt = corrected
        if corrected != core:
            self._expand_synonyms(q, corrected, _W_HOMOPHONE_LONG)

        for run in latin_parts:
            self._analyze_latin(q, run)
        q.latin = "".join(latin_parts)
        return q

    def _add_text(self, q: _Query, text: str, weight: float) -> None:
        """Add an expansion (synonym/intent/correction): phrase match + damped words."""
        q.add_phrase(text, weight)
        for tok in _cut(text):
            if tok not in self._lex.stop_tokens:
                for w in _subwords(tok):
                    unit = _W_SINGLE_CHAR if len(w) == 1 else _W_WORD
                    q.add("w:" + w, weight * _W_EXPANSION_WORDS * unit)

    def _expand_synonyms(self, q: _Query, text: str, scale: float) -> None:
        for key in _non_overlapping(text, self._lex.synonyms, self._phrases):
            for exp in self._lex.synonyms[key]:
                self._add_text(q, exp, scale * _W_SYNONYM)
        for key in _non_overlapping(text, self._lex.intents):
            for exp in self._lex.intents[key]:
                self._add_text(q, exp, scale * _W_INTENT)

    def _correct_homophones(self, q: _Query, core: str) -> str:
        """Windows of the query that sound like a catalogue term but are spelt differently.

        "社保咔" / "户口迁已" / "残急证": same pinyin as 社保卡 / 户口迁移 / 残疾证. The term must
        share most of its characters with the window (one typo per short word), which keeps
        unrelated homophones (事宜 vs 适宜) from firing. Returns core with corrections applied.
        """
        corrected = core
        for run in _HAN.findall(core):
            readings = _han_readings(run)
            n = len(run)
            for size in range(min(8, n), 1, -1):
                for start in range(n - size + 1):
                    window = run[start : start + size]
                    if window in self._vocab:
                        continue
                    combos = itertools.islice(
                        itertools.product(*readings[start : start + size]), 12
                    )
                    for combo in combos:
                        for term in self._py_map.get("".join(combo), ()):
                            same = sum(a == b for a, b in zip(term, window, strict=False))
                            if len(term) != size or same < max(1, size - max(1, size // 3)):
                                continue
                            w = _W_HOMOPHONE_LONG if size >= 3 else _W_HOMOPHONE_2
                            self._add_text(q, term, w)
                            corrected = corrected.replace(window, term)
        return corrected

    def _analyze_latin(self, q: _Query, run: str) -> None:
        """A run of ascii letters: full pinyin ("shebaoka") and/or initials ("sbk")."""
        parsed = self._parse_pinyin(run)
        if parsed is not None:
            pieces, syllables = parsed
            for terms in pieces:
                for term, share in self._term_shares(terms, 1.0):
                    self._add_text(q, term, share)
                    self._expand_synonyms(q, term, share)
            for bg in _bigrams(syllables, "_"):
                q.add("p:" + bg, _W_PINYIN_LATIN)
        # Short runs may be initials even if they happen to parse ("hz" does not, "da" does).
        if (parsed is None or len(run) <= 4) and len(run) >= 2:
            q.initials.append(run)
            for terms in self._parse_initials(run):
                for term, share in self._term_shares(terms, _W_INITIALS_TERM):
                    self._add_text(q, term, share)
                    self._expand_synonyms(q, term, share)

    def _term_shares(self, terms: Sequence[str], weight: float) -> list[tuple[str, float]]:
        """Split a pinyin/initials reading's weight among the terms it could spell.

        Curated terms (keywords, lexicon entries) are what people abbreviate, so "db" means
        低保 far more often than 担保 (a mere sub-word of some name): they get full weight.
        """
        share = weight / math.sqrt(len(terms))
        return [(t, share if t in self._curated else share * 0.5) for t in terms]

    def _parse_pinyin(self, run: str) -> tuple[list[tuple[str, ...]], list[str]] | None:
        """Cover the letters with catalogue-term pinyin (cost 1) or bare syllables (cost 2).

        Whole catalogue terms are preferred, which also resolves syllable ambiguity
        (fangan: 方案 vs fan+gan) in favour of words that exist in the catalogue.
        Returns (catalogue terms per word piece, full syllable sequence) or None.
        """
        syl_set = _syllables()
        n = len(run)
        inf = (math.inf, 0)
        best: list[tuple[float, int]] = [inf] * (n + 1)
        back: list[tuple[int, bool]] = [(-1, False)] * (n + 1)
        best[0] = (0.0, 0)
        max_len = max(self._max_py_len, 6)
        for i in range(n):
            if best[i][0] == math.inf:
                continue
            for j in range(i + 1, min(n, i + max_len) + 1):
                sub = run[i:j]
                if sub in self._py_map:
                    cost, is_word = 1.0, True
                elif sub in syl_set:
                    cost, is_word = 2.0, False
                else:
                    continue
                cand = (best[i][0] + cost, best[i][1] + 1)
                if cand < best[j]:
                    best[j] = cand
                    back[j] = (i, is_word)
        if best[n][0] == math.inf:
            return None
        pieces: list[tuple[str, ...]] = []
        syllables: list[str] = []
        j = n
        while j > 0:
            i, is_word = back[j]
            sub = run[i:j]
            if is_word:
                pieces.append(self._py_map[sub])
                syllables[:0] = list(self._py_syl[sub])
            else:
                syllables.insert(0, sub)
            j = i
        pieces.reverse()
        return pieces, syllables

    def _parse_initials(self, run: str) -> list[tuple[str, ...]]:
        """Split initials into catalogue-term initials ("dbsq" -> 低保 + 申请); [] if no cover.

        At most 3 pieces / 8 letters: beyond that a letter string is noise ("zzzzzzzz"), not
        an abbreviation anyone types.
        """
        n = len(run)
        if n > 8:
            return []
        best: list[float] = [math.inf] * (n + 1)
        back = [-1] * (n + 1)
        best[0] = 0
        for i in range(n):
            if best[i] == math.inf:
                continue
            for j in range(i + 2, min(n, i + 8) + 1):
                if run[i:j] in self._ini_map and best[i] + 1 < best[j]:
                    best[j] = best[i] + 1
                    back[j] = i
        if best[n] > 3:
            return []
        out: list[tuple[str, ...]] = []
        j = n
        while j > 0:
            i = back[j]
            terms = self._ini_map[run[i:j]]
            # Very ambiguous initials (e.g. "dj": 登记, 单据, ...) carry little information.
            if len(terms) <= 6:
                out.append(terms)
            j = i
        return out[::-1]

    def _unigram_fallback(self, core: str, doc_type: str | None) -> npt.NDArray[np.float64]:
        """Last resort when no other channel matched: shared characters.

        A doc must share at least two distinct characters with a multi-char query, so an
        off-topic query ("重庆") does not return docs that merely share one common char.
        """
        chars = [
            ch for ch in dict.fromkeys(core) if _HAN.match(ch) and ch not in self._lex.stop_tokens
        ]
        n = len(self._docs)
        base = np.zeros(n, dtype=np.float64)
        matched = np.zeros(n, dtype=np.int32)
        for ch in chars:
            ids, contrib = self._postings.get("u:" + ch, _EMPTY_POSTINGS)
            base[ids] += _W_UNIGRAM_FALLBACK * contrib
            matched[ids] += 1
        if doc_type is not None:
            base[self._types != doc_type] = 0.0
        base[matched < min(2, len(chars))] = 0.0
        return base

    def _phrase_hits(self, phrase: str) -> _Postings:
        """Docs containing the phrase verbatim, with a BM25-saturated, idf-weighted score.

        The substring test runs once per distinct field text holding the phrase's rarest
        bigram (county copies share their texts); each doc then sums its matching fields.
        Cached per phrase, since expansions repeat across queries.
        """
        cached = self._phrase_cache.get(phrase)
        if cached is not None:
            return cached
        candidates = [self._phrase_index.get(bg, ()) for bg in _bigrams(phrase)]
        s = np.zeros(len(self._docs), dtype=np.float64)
        if candidates and all(candidates):
            for u in min(candidates, key=len):
                text, weight = self._phrase_units[u]
                if phrase in text:
                    s[self._phrase_unit_docs[u]] += weight
        ids = np.flatnonzero(s).astype(np.int32)
        s = s[ids]
        n = len(self._docs)
        idf = math.log(1.0 + (n - len(ids) + 0.5) / (len(ids) + 0.5))
        out = (ids, idf * s * (_K1 + 1) / (s + _K1))
        if len(self._phrase_cache) >= _PHRASE_CACHE_SIZE:
            self._phrase_cache.clear()  # crude bound; the hot set refills within seconds
        self._phrase_cache[phrase] = out
        return out

    def _score_initials(self, ini: str, scores: npt.NDArray[np.float64]) -> None:
        """Initials ("sbk") as a substring of a field's initials; a doc scores its best field."""
        units: set[int] | None = None
        for bg in _bigrams(ini):
            hit = self._ini_index.get(bg, ())
            units = set(hit) if units is None else units.intersection(hit)
            if not units:
                return
        best = np.zeros(len(self._docs), dtype=np.float64)
        for u in sorted(units or ()):
            field_ini, weight = self._ini_units[u]
            if ini in field_ini:
                # coverage: "sbk" fully covering keyword 社保卡 beats a hit inside a long name
                ids = self._ini_unit_docs[u]
                best[ids] = np.maximum(best[ids], weight * math.sqrt(len(ini) / len(field_ini)))
        scores += _INITIALS_SCORE * best

    def _fuzzy_bonus(
        self, q: _Query, pool: list[int], top_base: float, final: dict[int, float]
    ) -> None:
        """rapidfuzz partial_ratio over the candidate pool only (never the whole catalogue)."""
        probes: list[tuple[str, list[str]]] = []
        for probe in dict.fromkeys(p for p in (q.core, q.core_alt) if len(p) >= 2):
            probes.append((probe, self._match_text))
        if len(q.latin) >= 3:
            probes.append((q.latin, self._match_py))
        best: dict[int, float] = {}
        for probe, texts in probes:
            choices = {d: texts[d] for d in pool}
            for _, score, doc_id in process.extract(
                probe, choices, scorer=fuzz.partial_ratio, limit=len(choices), score_cutoff=60
            ):
                best[doc_id] = max(best.get(doc_id, 0.0), score)
        for doc_id, score in best.items():
            final[doc_id] += _FUZZ_W * top_base * ((score - 60.0) / 40.0) ** 2
        for probe in {q.core, q.core_alt}:
            if probe:
                for doc_id in pool:
                    if probe in self._exact[doc_id]:
                        final[doc_id] += _EXACT_W * top_base


# --- catalogue adapter -----------------------------------------------------------------------
def docs_from_catalogue(catalogue: Mapping[str, Any]) -> list[SearchDoc]:
    """SearchDocs from the seed catalogue shape (seed/qingyang_demo.json).

    Items map field-for-field; a bundle's extra is its member item names, so "水电气过户"
    can find the 二手房 bundle through its members.
    """
    items = list(catalogue.get("items", ()))
    names = {it["code"]: it["name"] for it in items}
    docs = [
        SearchDoc(
            type="item",
            code=it["code"],
            name=it["name"],
            keywords=tuple(it.get("keywords", ())),
            theme=it.get("theme", ""),
            department=it.get("department", ""),
        )
        for it in items
    ]
    for b in catalogue.get("bundles", ()):
        members = " ".join(names[c] for c in b.get("items", ()) if c in names)
        docs.append(SearchDoc(type="bundle", code=b["code"], name=b["name"], extra=members))
    return docs
