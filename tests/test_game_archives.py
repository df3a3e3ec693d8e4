"""The game archive readers (core/distill/games.py) on small archives built here in each format.

No game data is in the repository or needed: each test writes a QTBL table, a sky.dnr/sky.dsk pair or a
Drascula folder holding a few lines of known audio, then checks what the readers list and decode.
"""

import struct
import subprocess

import numpy as np
import pytest

from core.audio import FFMPEG, SAMPLE_RATE, to_mono_16k
from core.distill import games, real

RATE = games.GAME_RATE


def _tone_u8(seconds: float, freq: float) -> bytes:
    t = np.arange(int(seconds * RATE)) / RATE
    return np.round(128 + 100 * np.sin(2 * np.pi * freq * t)).astype(np.uint8).tobytes()


def _mp3(raw_u8: bytes) -> bytes:
    cmd = [FFMPEG, "-nostdin", "-v", "error", "-f", "u8", "-ar", str(RATE), "-ac", "1", "-i", "pipe:",
           "-b:a", "16k", "-f", "mp3", "pipe:"]
    return subprocess.run(cmd, input=raw_u8, capture_output=True, check=True).stdout


def _write_queen(root, entries: dict[str, bytes]):
    path = root / games.QUEEN_PATH
    path.parent.mkdir(parents=True)
    header = games.QUEEN_HEADER.pack(b"QTBL", b"CEM10\0", games.QUEEN_MP3, len(entries))
    offset = len(header) + games.QUEEN_ENTRY.size * len(entries)
    table, body = b"", b""
    for name, data in entries.items():
        table += games.QUEEN_ENTRY.pack(name.encode(), 1, offset + len(body), len(data))
        body += data
    path.write_bytes(header + table + body)


def test_queen_table_lists_speech_entries_and_decodes_mp3(tmp_path):
    raw = _tone_u8(1.5, 440.0)
    _write_queen(tmp_path, {"020006J1.SB": _mp3(raw), "ROOM01.DAT": b"\0" * 100, "02001EP2.SB": _mp3(_tone_u8(0.5, 300))})
    lines = list(games.queen_lines(tmp_path))
    assert [(x.name, x.group) for x in lines] == [("020006J1.SB", "02J"), ("02001EP2.SB", "02P")]
    audio = lines[0].load()
    assert audio.dtype == np.float32 and 1.5 <= len(audio) / SAMPLE_RATE < 1.5 + 0.2  # MP3 pads up to ~2 frames
    assert 0.5 < np.abs(audio).max() < 1.0  # the tone, not silence or garbage


def test_queen_reader_refuses_another_format():
    with pytest.raises(ValueError):
        games.queen_entries(b"RIFF" + b"\0" * 40)


def test_sky_index_finds_packed_and_plain_speech_files(tmp_path):
    import propack

    folder = tmp_path / games.SKY_DIR
    folder.mkdir(parents=True)
    packed_raw, plain_raw = _tone_u8(0.8, 500.0), _tone_u8(0.4, 250.0)
    header = b"\x80" * games.SKY_HEADER_BYTES
    files = {50102: header + propack.pack(packed_raw), 50103: header + plain_raw, 1234: b"not speech" * 10}
    disk, entries = b"", []
    for number, data in files.items():
        disk += b"\0" * (-len(disk) % 16)  # a shifted offset counts in 16-byte units
        offset = len(disk)
        stored = (offset >> 4) | games.SKY_SHIFTED if number == 50103 else offset
        entries.append(struct.pack("<H", number) + stored.to_bytes(3, "little") + len(data).to_bytes(3, "little"))
        disk += data
    (folder / "sky.dsk").write_bytes(disk)
    (folder / "sky.dnr").write_bytes(struct.pack("<I", len(entries)) + b"".join(entries))

    lines = list(games.sky_lines(tmp_path))
    assert [(x.name, x.group) for x in lines] == [("50102", "block501"), ("50103", "block501")]
    for line, raw in zip(lines, (packed_raw, plain_raw)):
        expected = to_mono_16k((np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128, RATE)
        np.testing.assert_allclose(line.load(), expected, atol=1e-6)


def test_drascula_lines_are_grouped_by_character_prefix(tmp_path):
    folder = tmp_path / games.DRASCULA_DIR
    folder.mkdir(parents=True)
    for name in ("12.ALS", "VB3.ALS", "BJ10.ALS"):
        (folder / name).write_bytes(_tone_u8(0.3, 400.0))
    (folder / "1.ALD").write_bytes(b"\0" * 10)
    lines = list(games.drascula_lines(tmp_path))
    assert sorted((x.name, x.group) for x in lines) == [("12.ALS", "hero"), ("BJ10.ALS", "BJ"), ("VB3.ALS", "VB")]
    assert abs(len(lines[0].load()) - 0.3 * SAMPLE_RATE) <= 2


def test_real_speech_stage_reads_the_game_archives(tmp_path):
    folder = tmp_path / games.DRASCULA_DIR
    folder.mkdir(parents=True)
    (folder / "7.ALS").write_bytes(_tone_u8(0.3, 400.0))
    listed = [(package, group, name) for package, group, name, _ in real._files(tmp_path)]
    assert listed == [("drascula", "hero", "7.ALS")]


def test_dev_split_holds_out_whole_groups_up_to_its_share():
    bases = [(None, {"package": "game", "group": "hero"}) for _ in range(600)]
    bases += [(None, {"package": "game", "group": f"g{i}"}) for i in range(40) for _ in range(10)]
    bases += [(None, {"package": "tiny", "group": "only"})]
    held = real.dev_groups(bases)
    assert ("game", "hero") not in held  # the hero holds 60%: never the dev set
    held_windows = sum(1 for _, m in bases if (m["package"], m["group"]) in held and m["package"] == "game")
    assert real.DEV_SHARE * 1000 <= held_windows < real.DEV_SHARE * 1000 + 10  # whole groups of 10
    assert held == real.dev_groups(list(reversed(bases)))  # order of the windows does not matter
    assert real.copies_of("drascula") == 1 and real.copies_of("hedgewars-data") == len(real.SPEEDS)
