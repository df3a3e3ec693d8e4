"""Freely licensed English text that is on this machine offline, cleaned into speakable sentences.

Sources (Debian packages; whichever are installed are used):
- `r-cran-janeaustenr`: six public-domain Jane Austen novels, read from R's lazy-load database with
  a tiny reader of R's serialisation format (no R needed);
- `wordnet-base`: the example sentences quoted in WordNet 3.0 glosses (WordNet licence, free);
- `fortunes` / `fortunes-min`: the BSD fortune files (prose collections only).

Evaluation text never reaches the training set: every sentence sharing a 5-word run with a clip
transcript used by the tests or the benchmark (manifests under assets/audio and ../shared/audio, plus
the built-in list below) is dropped, Sense and Sensibility chapter 1 (the LibriVox clips) is dropped
whole, and so is any passage that mentions Kennedy or an inauguration.
"""

from __future__ import annotations

import gzip
import json
import re
import struct
import unicodedata
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from core.metrics import normalize

REPO_ROOT = Path(__file__).resolve().parents[2]
AUSTEN_DIR = Path("/usr/lib/R/site-library/janeaustenr/data")
WORDNET_DIR = Path("/usr/share/wordnet")
FORTUNE_DIR = Path("/usr/share/games/fortunes")
# prose collections; the rest is ASCII art, code, jargon or offensive
FORTUNE_FILES = (
    "fortunes", "literature", "people", "wisdom", "humorists", "love", "men-women", "miscellaneous",
    "platitudes", "politics", "science", "education", "food", "law", "medicine", "pets", "sports",
    "work", "kids", "magic", "news", "paradoxum", "pratchett", "riddles", "tao", "goedel", "startrek",
    "cookie",
)
EVAL_MANIFESTS = (REPO_ROOT / "assets/audio/manifest.jsonl", REPO_ROOT.parent / "shared/audio/manifest.jsonl")
# transcripts of the evaluation clips, also when their manifests are absent
BLOCKED_TEXTS = (
    "And so, my fellow Americans, ask not what your country can do for you, ask what you can do for your country.",
    "My fellow citizens of the world, ask not what America will do for you, but what together we can do for the freedom of man.",
    "Let us never negotiate out of fear. But let us never fear to negotiate.",
    "he was not an ill disposed young man",
    "he might even have been made amiable himself",
    "go forward ten meters",
    "You are about to enter an echo test. In this mode everything you say will be repeated back to you just as soon as "
    "it is received. The purpose of this test is to give you an audible sense of the latency between you and the "
    "machine that is running the echo test application. You may end the test by hanging up or by pressing the pound key.",
)
BLOCKED_WORDS = re.compile(r"kennedy|inaugura|echo test", re.I)  # checked on text without apostrophes
BLOCK_NGRAM = 5  # a sentence sharing this many consecutive normalised words with an eval text is dropped
MIN_WORDS, MAX_WORDS = 3, 40  # a sentence is read in ~1-15 s
_ALLOWED = re.compile(r"^[A-Za-z0-9 .,;:!?'()-]+$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(]?[A-Z0-9])")
_ABBREVIATIONS = re.compile(r"\b(Mr|Mrs|Ms|Dr|St|Col|Capt|Gen|Sir|Rev|Prof|Lt|Sgt|vs|etc|No)\.$")


# ---- reading R's lazy-load database (janeaustenr) ----------------------------------------------


class _RReader:
    """Just enough of R's XDR serialisation for character vectors, lists and their attributes."""

    def __init__(self, data: bytes):
        self.data, self.pos, self.refs = data, 0, []

    def _int(self) -> int:
        value = struct.unpack_from(">i", self.data, self.pos)[0]
        self.pos += 4
        return value

    def read_file(self):
        if self.data[:2] != b"X\n":
            raise ValueError("not an XDR-serialised R object")
        self.pos = 2
        version = self._int()
        self._int(), self._int()  # writer and minimal reader versions
        if version == 3:
            length = self._int()  # native encoding name
            self.pos += length
        return self._item()

    def _item(self):
        flags = self._int()
        kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if kind in (254, 242, 251, 253):  # NULL, empty env, missing arg, global env
            return None
        if kind == 255:  # reference to an earlier symbol
            return self.refs[(flags >> 8) - 1]
        if kind == 1:  # symbol
            name = self._item()
            self.refs.append(name)
            return name
        if kind == 9:  # CHARSXP
            n = self._int()
            if n == -1:
                return None
            text = self.data[self.pos : self.pos + n].decode("utf-8", "replace")
            self.pos += n
            return text
        if kind == 2:  # pairlist (attributes): {tag: value}
            out = {}
            while kind == 2:
                if has_attr:
                    self._item()
                tag = self._item() if has_tag else None
                out[tag] = self._item()
                flags = self._int()
                kind, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
            return out
        if kind in (10, 13, 14, 16, 19):  # logical, integer, double, character, list
            n = self._int()
            if kind in (16, 19):
                values = [self._item() for _ in range(n)]
            else:
                fmt = "d" if kind == 14 else "i"
                values = list(struct.unpack_from(f">{n}{fmt}", self.data, self.pos))
                self.pos += n * struct.calcsize(fmt)
            attributes = self._item() if has_attr else {}
            return RVector(values, attributes or {})
        raise ValueError(f"unsupported R object type {kind}")


@dataclass
class RVector:
    values: list
    attributes: dict = field(default_factory=dict)


def read_r_lazyload(stem: Path) -> dict[str, list]:
    """Objects of an R package's data/Rdata.rdb (+ .rdx index), as {name: values}."""
    index = _RReader(gzip.decompress(stem.with_suffix(".rdx").read_bytes())).read_file()
    variables = index.values[0]
    blob = stem.with_suffix(".rdb").read_bytes()
    out = {}
    for name, entry in zip(variables.attributes["names"].values, variables.values):
        offset, length = entry.values
        chunk = blob[offset : offset + length]
        out[name] = _RReader(zlib.decompress(chunk[4:])).read_file().values  # 4-byte length, then zlib
    return out


# ---- cleaning and splitting ------------------------------------------------------------------------


def clean(text: str) -> str | None:
    """A sentence a TTS engine reads as written, or None (headings, code, odd symbols, too short/long)."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = text.replace("_", "").replace("--", ", ").replace("&", " and ").replace('"', "").replace("`", "'")
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r" ([,.;:!?])", r"\1", text).strip(" ,;:-'")
    if not text or not _ALLOWED.match(text) or "http" in text.lower():
        return None
    letters = [c for c in text if c.isalpha()]
    if len(letters) < 8 or sum(c.isupper() for c in letters) > 0.5 * len(letters):
        return None
    if not MIN_WORDS <= len(text.split()) <= MAX_WORDS:
        return None
    if text[-1] not in ".!?":
        text += "."
    return text[0].upper() + text[1:]


def split_sentences(paragraph: str) -> list[str]:
    """Split on sentence ends, keeping "Mr. Dashwood" together."""
    pieces, current = [], ""
    for piece in _SENTENCE_END.split(paragraph):
        current = f"{current} {piece}".strip() if current else piece
        if not _ABBREVIATIONS.search(current):
            pieces.append(current)
            current = ""
    if current:
        pieces.append(current)
    return pieces


def _words(text: str) -> list[str]:
    """Lower-case words without punctuation: fast enough for every sentence of the corpus."""
    return re.sub(r"[^a-z0-9']+", " ", text.lower()).replace("'", "").split()


class Blocklist:
    """Evaluation transcripts: drop any sentence that shares a 5-word run with one of them.

    Eval texts enter twice, as written and through Whisper's normaliser ("ten" and "10")."""

    def __init__(self, texts):
        self.ngrams: set[tuple[str, ...]] = set()
        self.short: list[str] = []
        for text in texts:
            for words in (_words(text), _words(normalize(text))):
                if len(words) < BLOCK_NGRAM:
                    self.short.append(" ".join(words))
                self.ngrams.update(zip(*(words[i:] for i in range(BLOCK_NGRAM))))

    @classmethod
    def default(cls) -> "Blocklist":
        texts = list(BLOCKED_TEXTS)
        for manifest in EVAL_MANIFESTS:
            if manifest.is_file():
                texts += [json.loads(line)["text"] for line in manifest.read_text().splitlines() if line.strip()]
        return cls(texts)

    def blocks(self, sentence: str) -> bool:
        words = _words(sentence)
        if any(g in self.ngrams for g in zip(*(words[i:] for i in range(BLOCK_NGRAM)))):
            return True
        padded = f" {' '.join(words)} "
        return any(s and f" {s} " in padded for s in self.short)


# ---- the sources -------------------------------------------------------------------------------------


def austen_passages() -> list[list[str]]:
    """Paragraphs of the six novels, Sense and Sensibility chapter 1 left out (evaluation clips)."""
    if not (AUSTEN_DIR / "Rdata.rdb").is_file():
        return []
    passages = []
    for name, lines in sorted(read_r_lazyload(AUSTEN_DIR / "Rdata").items()):
        chapter, paragraph = "", []
        for line in [*lines, ""]:
            line = (line or "").strip()
            if re.match(r"^(CHAPTER|Chapter)\s+\w+\.?$", line):
                chapter, paragraph = line.upper(), []
                continue
            if line:
                paragraph.append(line)
                continue
            if paragraph and not (name == "sensesensibility" and chapter in ("", "CHAPTER 1")):
                passages.append(split_sentences(" ".join(paragraph)))
            paragraph = []
    return passages


def wordnet_passages() -> list[list[str]]:
    """The quoted usage examples of WordNet glosses, one passage each."""
    out = []
    for part in ("noun", "verb", "adj", "adv"):
        path = WORDNET_DIR / f"data.{part}"
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("  ") or "|" not in line:  # licence header
                continue
            out += [[example] for example in re.findall(r'"([^"]{12,})"', line.split("|", 1)[1])]
    return out


def fortune_passages() -> list[list[str]]:
    """Each fortune, attribution lines dropped."""
    out = []
    for name in FORTUNE_FILES:
        path = FORTUNE_DIR / name
        if not path.is_file():
            continue
        for fortune in re.split(r"\n%\n", path.read_text(errors="replace")):
            lines = [ln.strip() for ln in fortune.splitlines() if ln.strip() and not ln.strip().startswith("--")]
            if lines:
                out.append(split_sentences(" ".join(lines)))
    return out


# Written for this project (public domain): only used when no Debian text package is installed, so the
# pipeline (and its toy test) still runs on a machine that has nothing but a TTS engine.
BUILTIN_TEXT = """The morning train was late again, so we walked to the harbour instead.
She kept a small notebook in her coat pocket and wrote down every bird she saw.
Nobody expected the old bridge to survive the winter floods, but it did.
Please put the blue folder on the second shelf before you leave.
The bakery on the corner sells bread that is still warm at seven o'clock.
He tuned the piano for an hour and then played a single quiet song.
Our neighbours painted their fence yellow, and the whole street looks brighter.
A strong wind came up from the west and scattered the leaves across the garden.
The library closes early on Sundays, so plan your visit for the afternoon.
When the lights went out, the children told stories by candlelight.
They measured the field twice and still could not agree on its size.
Fresh snow covered the mountain path, and every step left a clear print.
The museum has a room full of clocks that all chime at noon.
I would rather cook a simple meal at home than wait for a table in town.
The captain checked the weather and decided to stay in port for one more night.
Her brother repairs old radios and sells them at the Saturday market.
Water the tomatoes in the evening, when the sun is no longer on the leaves.
The committee will meet next Thursday to discuss the new playground.
A tall man in a grey hat asked us for directions to the station.
The river was calm, and we could see small fish near the stones.
Every summer the village holds a festival with music and dancing in the square.
The recipe calls for two eggs, a cup of flour and a pinch of salt.
My grandmother kept letters from friends she had not seen in fifty years.
The cat slept on the windowsill while the rain tapped on the glass.
We counted the stars until the clouds rolled in and hid them all.
The teacher asked the class to read the first chapter before Monday.
Turn left at the post office and the hotel is on your right.
The orchestra tuned their instruments as the audience took their seats.
He forgot his umbrella on the bus and arrived at work completely soaked.
The farmer says the apples will be ready to pick in about two weeks."""


def builtin_passages() -> list[list[str]]:
    return [[line] for line in BUILTIN_TEXT.splitlines()]


SOURCES = {"austen": austen_passages, "wordnet": wordnet_passages, "fortunes": fortune_passages}
SOURCE_WEIGHTS = {"austen": 0.6, "wordnet": 0.15, "fortunes": 0.25, "builtin": 1.0}


@dataclass
class Corpus:
    """Per source, a flat list of clean sentences, passages kept contiguous: a window reads on from any sentence."""

    sentences: dict[str, list[str]]
    dropped_blocked: int = 0

    @classmethod
    def load(cls, sources=None, blocklist: Blocklist | None = None) -> "Corpus":
        blocklist = blocklist or Blocklist.default()
        sentences, dropped = {}, 0
        for name in SOURCES if sources is None else sources:
            flat = []
            for passage in SOURCES[name]():
                if BLOCKED_WORDS.search(" ".join(passage).replace("'", "")):
                    dropped += len(passage)
                    continue
                for raw in passage:
                    sentence = clean(raw)
                    if sentence is None:
                        continue
                    if blocklist.blocks(sentence):
                        dropped += 1
                        continue
                    flat.append(sentence)
            if flat:
                sentences[name] = flat
        if not sentences:  # nothing installed: the small built-in text keeps the pipeline usable
            sentences["builtin"] = [clean(p[0]) for p in builtin_passages()]
        return cls(sentences, dropped)

    @property
    def names(self) -> list[str]:
        return sorted(self.sentences)

    def summary(self) -> dict:
        return {
            "sentences": {name: len(s) for name, s in sorted(self.sentences.items())},
            "words": {name: sum(len(x.split()) for x in s) for name, s in sorted(self.sentences.items())},
            "dropped_as_evaluation_text": self.dropped_blocked,
        }
