"""Subtitle and JSON output for one mode's result, in the style of whisper/utils.py writers.

Each mode (student, teacher, speculative) gets its own files, so a user can
download and diff them. Timestamps are rounded to whole milliseconds once,
before formatting, so SRT, VTT and JSON always agree with each other.
"""

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Protocol, Tuple, Union

SUBTITLE_FORMATS = ("srt", "vtt", "json")
VTT_HEADER = "WEBVTT"
JSON_INDENT = 2

# A cue's text must not look like a timing line, and a blank line would end the cue early.
_ARROW = "-->"
_ARROW_REPLACEMENT = "->"
# Anything else in a mode name becomes "_" so it is safe inside a file name.
_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


class Word(Protocol):
    text: str
    start_s: float
    end_s: float
    probability: float


class Segment(Protocol):
    start: float  # seconds from the start of the audio
    end: float
    text: str
    words: Optional[Tuple[Word, ...]]  # None: word timing was not asked for


class ModeResult(Protocol):
    mode: str
    text: str
    segments: Optional[List[Segment]]


Cue = Tuple[int, int, str, Optional[List[Tuple[int, int, str, float]]]]  # start_ms, end_ms, text, words (ms) or None


def _to_ms(seconds: float) -> int:
    """Seconds -> whole ms; negatives clamp to 0 (decoders can emit -0.0 or tiny negatives)."""
    seconds = float(seconds)
    if not math.isfinite(seconds):
        raise ValueError(f"timestamp must be finite, got {seconds!r}")
    return max(0, round(seconds * 1000.0))


def _format_ms(
    milliseconds: int, always_include_hours: bool = False, decimal_marker: str = "."
) -> str:
    hours = milliseconds // 3_600_000
    milliseconds -= hours * 3_600_000
    minutes = milliseconds // 60_000
    milliseconds -= minutes * 60_000
    seconds = milliseconds // 1_000
    milliseconds -= seconds * 1_000
    hours_marker = f"{hours:02d}:" if always_include_hours or hours > 0 else ""
    return f"{hours_marker}{minutes:02d}:{seconds:02d}{decimal_marker}{milliseconds:03d}"


def format_timestamp(
    seconds: float, always_include_hours: bool = False, decimal_marker: str = "."
) -> str:
    """Same output as whisper.utils.format_timestamp; negatives clamp to 0 rather than assert."""
    return _format_ms(_to_ms(seconds), always_include_hours, decimal_marker)


def _clean_text(text: Optional[str]) -> str:
    """One line, no arrows: keeps every cue parseable by any SRT/VTT reader."""
    return " ".join((text or "").split()).replace(_ARROW, _ARROW_REPLACEMENT)


def _cues(segments: Optional[Iterable[Segment]]) -> List[Cue]:
    """Segments -> cues: empty text dropped, times rounded to ms, end clamped to >= start."""
    cues = []
    for segment in segments or ():
        text = _clean_text(segment.text)
        if not text:
            continue
        start = _to_ms(segment.start)
        end = max(start, _to_ms(segment.end))
        words = getattr(segment, "words", None)
        timed = None if words is None else [
            (_to_ms(w.start_s), max(_to_ms(w.start_s), _to_ms(w.end_s)), w.text, w.probability)
            for w in words if w.text.strip()]
        cues.append((start, end, text, timed))
    return cues


def to_srt(segments: Optional[Iterable[Segment]]) -> str:
    """SubRip: numbered from 1, always HH:MM:SS,mmm."""
    blocks = []
    for i, (start, end, text, _) in enumerate(_cues(segments), start=1):
        blocks.append(
            f"{i}\n"
            f"{_format_ms(start, True, ',')} --> {_format_ms(end, True, ',')}\n"
            f"{text}\n"
        )
    return "\n".join(blocks)


def to_vtt(segments: Optional[Iterable[Segment]]) -> str:
    """WebVTT: header, then cues with MM:SS.mmm (hours only when needed), as whisper writes it. With word
    times, each word after the first carries a timestamp tag (karaoke-style players light it from then on)."""
    blocks = [f"{VTT_HEADER}\n"]
    for start, end, text, words in _cues(segments):
        if words:
            text = _tagged(start, end, words)
        blocks.append(f"{_format_ms(start)} --> {_format_ms(end)}\n{text}\n")
    return "\n".join(blocks)


def _tagged(start: int, end: int, words: List[Tuple[int, int, str, float]]) -> str:
    """Cue text with a <MM:SS.mmm> tag before each word that starts strictly inside the cue and after the tag
    before it (what the WebVTT spec allows; a word without a tag lights with the one before it)."""
    pieces, last = [], start
    for word_start, _, word, _ in words:
        word = " ".join(word.split(" ")).replace("\n", " ").replace(_ARROW, _ARROW_REPLACEMENT)
        if pieces and last < word_start < end:
            pieces.append(f"<{_format_ms(word_start)}>{word}")
            last = word_start
        else:
            pieces.append(word)
    return "".join(pieces).strip()


def _result_dict(result: ModeResult) -> Dict[str, Any]:
    """Dataclass results keep their extra fields (asdict); other objects give mode/text/segments."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        data = dataclasses.asdict(result)
    else:
        data = {}
    data["mode"] = result.mode
    data["text"] = (result.text or "").strip()
    data["segments"] = [
        {"start": start / 1000.0, "end": end / 1000.0, "text": text,
         **({} if words is None else {"words": [
             {"text": w, "start": a / 1000.0, "end": b / 1000.0, "probability": p} for a, b, w, p in words]})}
        for start, end, text, words in _cues(result.segments)
    ]
    return data


def to_json(result: ModeResult) -> str:
    """mode, text and the same cleaned segments as the SRT/VTT (seconds, ms precision).

    Values json cannot encode (e.g. a Path in a dataclass field) are written as str.
    """
    return json.dumps(
        _result_dict(result), indent=JSON_INDENT, ensure_ascii=False, default=str
    ) + "\n"


def _safe_filename_part(name: str) -> str:
    return _UNSAFE_FILENAME_CHARS.sub("_", str(name)).strip("._") or "result"


def write_subtitles(
    result: ModeResult, out_dir: Union[str, Path], stem: str
) -> Dict[str, Path]:
    """Write {stem}.{mode}.srt/.vtt/.json into out_dir (created if needed).

    All three files are always written, so a download link never points at a
    missing file: with no segments the SRT is empty, the VTT is just its header,
    and the JSON still carries the full text.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = f"{_safe_filename_part(stem)}.{_safe_filename_part(result.mode)}"
    contents = {
        "srt": to_srt(result.segments),
        "vtt": to_vtt(result.segments),
        "json": to_json(result),
    }
    paths = {}
    for fmt in SUBTITLE_FORMATS:
        path = out_dir / f"{base}.{fmt}"
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(contents[fmt])
        paths[fmt] = path
    return paths
