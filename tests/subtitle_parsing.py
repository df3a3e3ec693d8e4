"""Strict SRT and WebVTT readers, for the tests to check what core.subtitles writes."""

import re
from typing import List, Optional, Tuple

from core.subtitles import VTT_HEADER

_ARROW = "-->"
_SRT_TIME = r"(\d{2,}):(\d{2}):(\d{2}),(\d{3})"
_SRT_TIMING = re.compile(rf"^{_SRT_TIME} --> {_SRT_TIME}$")
_VTT_TIME = r"(?:(\d{2,}):)?(\d{2}):(\d{2})\.(\d{3})"
_VTT_TIMING = re.compile(rf"^{_VTT_TIME} --> {_VTT_TIME}(?:\s+.*)?$")


def _seconds(hours: Optional[str], minutes: str, seconds: str, millis: str) -> float:
    if int(minutes) > 59 or int(seconds) > 59:
        raise ValueError(f"minutes/seconds out of range in {minutes}:{seconds}")
    total_ms = (int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)) * 1000 + int(millis)
    return total_ms / 1000.0


def _blocks(text: str) -> List[List[str]]:
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blocks, current = [], []
    for line in lines:
        if line.strip():
            current.append(line.rstrip())
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _parse_cue(
    lines: List[str], timing: "re.Pattern[str]", where: str
) -> Tuple[float, float, str]:
    match = timing.match(lines[0].strip())
    if not match:
        raise ValueError(f"{where}: malformed timing line {lines[0]!r}")
    if len(lines) < 2:
        raise ValueError(f"{where}: cue has no text")
    start = _seconds(*match.groups()[:4])
    end = _seconds(*match.groups()[4:])
    if end < start:
        raise ValueError(f"{where}: end {end} is before start {start}")
    return start, end, "\n".join(line.strip() for line in lines[1:])


def parse_srt(text: str) -> List[Tuple[float, float, str]]:
    """Strict SRT reader for checking what we wrote: ValueError on any malformed cue.

    Each cue must be: a number (1, 2, 3, ... in order), an
    HH:MM:SS,mmm --> HH:MM:SS,mmm line with end >= start, and one or more text lines.
    """
    cues = []
    for expected, lines in enumerate(_blocks(text), start=1):
        where = f"SRT cue {expected}"
        if lines[0].strip() != str(expected):
            raise ValueError(f"{where}: expected index {expected}, got {lines[0]!r}")
        if len(lines) < 2:
            raise ValueError(f"{where}: missing timing line")
        cues.append(_parse_cue(lines[1:], _SRT_TIMING, where))
    return cues


def parse_vtt(text: str) -> List[Tuple[float, float, str]]:
    """Strict-enough WebVTT reader (header, optional cue ids, cue settings ignored); ValueError if malformed.

    NOTE/STYLE/REGION blocks are skipped; it does not implement the full WebVTT spec.
    """
    blocks = _blocks(text)
    if not blocks or not (
        blocks[0][0] == VTT_HEADER or blocks[0][0].startswith(VTT_HEADER + " ")
        or blocks[0][0].startswith(VTT_HEADER + "\t")
    ):
        raise ValueError(f"VTT must start with {VTT_HEADER!r}")
    cues = []
    for n, lines in enumerate(blocks[1:], start=1):
        if lines[0].split(" ", 1)[0] in ("NOTE", "STYLE", "REGION"):
            continue
        where = f"VTT cue {n}"
        if _ARROW not in lines[0]:  # optional cue identifier
            lines = lines[1:]
            if not lines:
                raise ValueError(f"{where}: missing timing line")
        cues.append(_parse_cue(lines, _VTT_TIMING, where))
    return cues
