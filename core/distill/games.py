"""Spoken lines of three freeware adventure games in Debian: hours of real English voice acting.

Whisper students learn real voices from real voices (round 3: 33 minutes of them halved the student's
WER on held-out real speech). These "talkie" versions ship their full English voice acting, many actors,
under licences that allow redistribution; none of them is an evaluation source. Each reader lists the
spoken lines of one package's archive as `Line`s whose loader returns 16 kHz mono float32:

    flight-of-the-amazon-queen  queen.1c: a QTBL table of MP3 entries; the `.SB` ones are speech
    beneath-a-steel-sky         sky.dnr indexes sky.dsk; files 50000-55999 are RNC-packed 8-bit speech
    drascula                    en/*.ALS: headerless 8-bit unsigned mono, one spoken line a file

The speaker of a line is only partly known, so each line gets a *group* that approximates one: the role
letters of an Amazon Queen name within its room ("J"/"JOE" is the hero; "P" the person he talks to), a
block of a hundred Steel Sky lines (a scene's dialogue), a Drascula character prefix. Groups are the unit
the dev split holds out (real.py).
"""

from __future__ import annotations

import re
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from core.audio import FFMPEG, SAMPLE_RATE, to_mono_16k

GAME_RATE = 11025  # all three games speak at 11025 Hz
QUEEN_PATH = "usr/share/scummvm/flight-of-the-amazon-queen/queen.1c"
QUEEN_MAGIC = b"QTBL"
QUEEN_HEADER = struct.Struct(">4s6s2xBH")  # magic, version, (skipped), compression, entry count
QUEEN_ENTRY = struct.Struct(">12sBII")  # name, bundle, offset, size
QUEEN_MP3 = 1
SKY_DIR = "usr/share/scummvm/beneath-a-steel-sky"
SKY_SPEECH = range(50000, 56000)
SKY_HEADER_BYTES = 22  # a data-file header before every file's contents
SKY_SHIFTED = 0x800000  # offset flag: the offset is in 16-byte units
SKY_SIZE_MASK = 0x3FFFFF
SKY_GROUP_LINES = 100
DRASCULA_DIR = "usr/share/scummvm/drascula/en"
DRASCULA_HERO = "hero"  # files named by a number alone


@dataclass(frozen=True)
class Line:
    package: str
    group: str
    name: str
    load: Callable[[], np.ndarray]


def _unsigned_8bit(raw: bytes) -> np.ndarray:
    samples = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    return to_mono_16k(samples, GAME_RATE)


def _mp3(data: bytes) -> np.ndarray:
    cmd = [FFMPEG, "-nostdin", "-v", "error", "-f", "mp3", "-i", "pipe:", "-ac", "1", "-ar", str(SAMPLE_RATE),
           "-f", "f32le", "pipe:"]
    out = subprocess.run(cmd, input=data, capture_output=True, check=True).stdout
    return np.frombuffer(out, "<f4").astype(np.float32)


def queen_entries(table: bytes) -> list[tuple[str, int, int]]:
    """(name, offset, size) of every entry of a QTBL archive; raises ValueError on another format."""
    magic, _version, compression, count = QUEEN_HEADER.unpack_from(table)
    if magic != QUEEN_MAGIC or compression != QUEEN_MP3:
        raise ValueError("not an MP3 QTBL archive")
    entries = []
    for i in range(count):
        name, _bundle, offset, size = QUEEN_ENTRY.unpack_from(table, QUEEN_HEADER.size + i * QUEEN_ENTRY.size)
        entries.append((name.rstrip(b"\0").decode("ascii"), offset, size))
    return entries


def queen_group(name: str) -> str:
    """'020006J1.SB' -> '02J': the room (first two digits) and the role letters."""
    return name[:2] + re.sub(r"[^A-Z_]", "", name[6:].removesuffix(".SB"))


def queen_lines(root: Path) -> Iterator[Line]:
    path = Path(root) / QUEEN_PATH
    if not path.is_file():
        return
    archive = path.read_bytes()
    for name, offset, size in queen_entries(archive):
        if name.endswith(".SB"):
            data = archive[offset:offset + size]
            yield Line("flight-of-the-amazon-queen", queen_group(name), name, lambda d=data: _mp3(d))


def sky_entries(index: bytes) -> list[tuple[int, int, int]]:
    """(file number, offset, size) of every entry of a sky.dnr index."""
    (count,) = struct.unpack_from("<I", index)
    entries = []
    for i in range(count):
        entry = index[4 + 8 * i: 12 + 8 * i]
        number = int.from_bytes(entry[:2], "little")
        offset = int.from_bytes(entry[2:5], "little")
        if offset & SKY_SHIFTED:
            offset = (offset & ~SKY_SHIFTED) << 4
        entries.append((number, offset, int.from_bytes(entry[5:8], "little") & SKY_SIZE_MASK))
    return entries


def sky_samples(stored: bytes) -> np.ndarray:
    """One speech file's contents (header dropped, RNC ProPack unpacked when packed) at 16 kHz."""
    import propack  # a distillation dependency (requirements-distill.txt)

    body = stored[SKY_HEADER_BYTES:]
    return _unsigned_8bit(propack.unpack(body) if body[:3] == b"RNC" else body)


def sky_lines(root: Path) -> Iterator[Line]:
    folder = Path(root) / SKY_DIR
    if not (folder / "sky.dnr").is_file():
        return
    disk = (folder / "sky.dsk").read_bytes()
    for number, offset, size in sorted(sky_entries((folder / "sky.dnr").read_bytes())):
        if number in SKY_SPEECH:
            data = disk[offset:offset + size]
            yield Line("beneath-a-steel-sky", f"block{number // SKY_GROUP_LINES}", str(number),
                       lambda d=data: sky_samples(d))


def drascula_group(stem: str) -> str:
    return re.sub(r"\d+$", "", stem) or DRASCULA_HERO


def drascula_lines(root: Path) -> Iterator[Line]:
    folder = Path(root) / DRASCULA_DIR
    for path in sorted(folder.glob("*.ALS")) if folder.is_dir() else ():
        yield Line("drascula", drascula_group(path.stem), path.name, lambda p=path: _unsigned_8bit(p.read_bytes()))


def game_lines(root: Path) -> Iterator[Line]:
    yield from queen_lines(root)
    yield from sky_lines(root)
    yield from drascula_lines(root)
