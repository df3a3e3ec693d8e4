"""WER on Whisper-normalised text, and the SRT/VTT/JSON writers."""

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import List, Optional

import pytest

from core.metrics import EMPTY_REFERENCE_WER, corpus_wer, normalize, wer
from core.subtitles import (
    format_timestamp,
    to_json,
    to_srt,
    to_vtt,
    write_subtitles,
)
from tests.subtitle_parsing import parse_srt, parse_vtt


@dataclass
class Seg:
    start: float
    end: float
    text: str


@dataclass
class Result:
    mode: str
    text: str
    segments: Optional[List[Seg]] = None
    timings: dict = field(default_factory=dict)


SEGMENTS = [
    Seg(0.0, 2.5, " And so my fellow Americans,"),
    Seg(2.5, 2.5, "   "),  # empty: skipped
    Seg(2.5004, 5.1236, "ask not what your country can do for you"),
    Seg(3725.5, 3724.0, "end before start --> clamps"),  # end < start: clamped
]


# --- normalisation and WER -------------------------------------------------

@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello, World!", "hello world"),
        ("The colour of the centre", "the color of the center"),  # english.json spelling map
        ("I have twenty one apples", "i have 21 apples"),  # spelled numbers -> digits
        ("one hundred and five", "105"),
        ("Mr. Smith's 10%", "mister smith is 10%"),  # titles expanded, 's -> is
        ("Okay, uh, um, so", "okay so"),  # hesitations dropped
        ("", ""),
        (None, ""),
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


def test_wer_ignores_case_punctuation_spelling_and_numbers():
    assert wer("The colour is twenty one.", "the color is 21") == 0.0
    assert wer("Hello, world!", "HELLO WORLD") == 0.0


def test_wer_one_deletion_is_one_over_n():
    assert wer("ask not what your country", "ask not what country") == pytest.approx(1 / 5)


def test_wer_can_exceed_one_with_insertions():
    assert wer("yes", "yes yes yes") == pytest.approx(2.0)


def test_wer_empty_cases():
    assert wer("", "") == 0.0
    assert wer("  ,. ", "") == 0.0  # normalises to empty on both sides
    assert wer("", "something said") == EMPTY_REFERENCE_WER == 1.0
    assert wer("two words", "") == 1.0


def test_corpus_wer_weights_by_reference_words():
    refs = ["a b c d", "x y", ""]
    hyps = ["a b c", "x z", "ignored because reference is empty"]
    # 1 deletion + 1 substitution over 6 reference words (not the mean of 1/4 and 1/2)
    assert corpus_wer(refs, hyps) == pytest.approx(2 / 6)
    assert corpus_wer(["a b"], [""]) == 1.0
    assert corpus_wer([""], ["x"]) == 0.0
    assert corpus_wer([], []) == 0.0
    with pytest.raises(ValueError):
        corpus_wer(["a"], [])


# --- timestamps and writers ---------------------------------------------------

def test_format_timestamp():
    assert format_timestamp(3725.5, always_include_hours=True, decimal_marker=",") == "01:02:05,500"
    assert format_timestamp(3725.5) == "01:02:05.500"  # hours appear when needed
    assert format_timestamp(65.0) == "01:05.000"
    assert format_timestamp(1.9996) == "00:02.000"  # rounding carries into seconds
    assert format_timestamp(-0.01) == "00:00.000"
    with pytest.raises(ValueError):
        format_timestamp(float("nan"))


def test_srt_round_trip():
    srt = to_srt(SEGMENTS)
    assert srt.startswith("1\n00:00:00,000 --> 00:00:02,500\nAnd so my fellow Americans,\n\n2\n")
    assert parse_srt(srt) == [
        (0.0, 2.5, "And so my fellow Americans,"),
        (2.5, 5.124, "ask not what your country can do for you"),
        (3725.5, 3725.5, "end before start -> clamps"),
    ]
    assert "01:02:05,500 --> 01:02:05,500" in srt
    assert to_srt([]) == "" and parse_srt("") == []


def test_vtt_round_trip():
    vtt = to_vtt(SEGMENTS)
    assert vtt.startswith("WEBVTT\n\n00:00.000 --> 00:02.500\n")
    assert [c[:2] for c in parse_vtt(vtt)] == [(0.0, 2.5), (2.5, 5.124), (3725.5, 3725.5)]
    assert to_vtt(None) == "WEBVTT\n"


@pytest.mark.parametrize(
    "bad",
    [
        "1\n00:00:01,000 -> 00:00:02,000\nhi\n",  # bad arrow
        "1\n00:00:01.000 --> 00:00:02.000\nhi\n",  # VTT decimal marker
        "1\n00:00:02,000 --> 00:00:01,000\nhi\n",  # end before start
        "1\n00:00:01,000 --> 00:00:02,000\n",  # no text
        "2\n00:00:01,000 --> 00:00:02,000\nhi\n",  # numbering not from 1
        "1\n00:61:01,000 --> 00:62:02,000\nhi\n",  # minutes out of range
    ],
)
def test_parse_srt_rejects_malformed(bad):
    with pytest.raises(ValueError):
        parse_srt(bad)


def test_to_json_dataclass_and_plain_object():
    data = json.loads(to_json(Result("student", " Hi there. ", SEGMENTS, {"decode_s": 1.5})))
    assert data["mode"] == "student" and data["text"] == "Hi there."
    assert data["timings"] == {"decode_s": 1.5}
    assert data["segments"][1] == {"start": 2.5, "end": 5.124, "text": "ask not what your country can do for you"}
    assert len(data["segments"]) == 3

    plain = SimpleNamespace(mode="teacher", text="x", segments=None)
    assert json.loads(to_json(plain)) == {"mode": "teacher", "text": "x", "segments": []}


def test_write_subtitles(tmp_path):
    paths = write_subtitles(Result("speculative", "text", SEGMENTS), tmp_path / "out", "jfk")
    assert set(paths) == {"srt", "vtt", "json"}
    assert paths["srt"] == tmp_path / "out" / "jfk.speculative.srt"
    assert len(parse_srt(paths["srt"].read_text(encoding="utf-8"))) == 3
    assert len(parse_vtt(paths["vtt"].read_text(encoding="utf-8"))) == 3
    assert json.loads(paths["json"].read_text(encoding="utf-8"))["mode"] == "speculative"

    # No segments: all three files still exist.
    empty = write_subtitles(SimpleNamespace(mode="teacher", text="", segments=None), tmp_path, "clip")
    assert all(Path(p).is_file() for p in empty.values())
    assert empty["srt"].read_text(encoding="utf-8") == ""
    assert empty["vtt"].read_text(encoding="utf-8") == "WEBVTT\n"
