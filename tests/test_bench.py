"""The benchmark end to end on bundled clips: the seed's columns like for like, the peers, the hallucination
columns, and speculative = teacher."""

import json
import os
import sys

import soundfile as sf

from conftest import AUDIO, TWO_WINDOWS, joined_speech
from core import bench, weights
from core.audio import load_audio
from core.peer import FasterWhisperPeer

COLUMNS = ("params_m", "rel_latency_short", "rel_latency_short_range", "rtfx_short", "tokens_per_s_short",
           "wer_short", "acceptance_rate", "peak_rss_mb")


def test_bench_on_short_and_long_clips(tmp_path, capsys):
    """Two short clips and one 35 s clip (five bundled clips joined), every mode alone, interleaved."""
    long_dir = tmp_path / "long"
    long_dir.mkdir()
    audio, text = joined_speech(TWO_WINDOWS)
    sf.write(long_dir / "joined.wav", audio, 16000)
    (long_dir / "manifest.jsonl").write_text(json.dumps({"file": "joined.wav", "text": text}) + "\n")
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    assert bench.main(["--preset", "local", "--data", str(AUDIO), "--limit", "2", "--long", str(long_dir),
                       "--repeat", "1", "--json", str(out), "--plot", str(png)]) == 0
    report = json.loads(out.read_text())
    assert report["schema"] == "distil-whisper-arena/report/1" and report["environment"]["preset"] == "local"
    summary = report["summary"]
    assert summary["clips"] == {"short": 2, "long": 1} and summary["batch_size"] == 1
    assert summary["speculative_mismatches"] == 0
    assert len(summary["costs"]["verify_T"]) == 12 and summary["costs"]["draft_step_T"] > 0  # the cost table
    rows = summary["rows"]
    assert set(rows) == {"student", "teacher", "speculative", "faster-whisper fp32", "faster-whisper int8",
                         "teacher, batch 8"}
    for name in ("student", "teacher", "speculative", "faster-whisper fp32", "faster-whisper int8"):
        assert set(COLUMNS) <= set(rows[name]), name
        assert rows[name]["rtfx_short"] > 0 and rows[name]["rel_latency_long"] > 0, name
        low, high = rows[name]["rel_latency_short_range"]
        assert low <= high
    assert rows["teacher"]["rel_latency_short"] == 1.0 and rows["teacher"]["wer_short"] == 0.0
    assert rows["speculative"]["acceptance_rate"] is not None and rows["speculative"]["tokens_per_pass"] > 1
    assert rows["teacher"]["wer_long_chunked"] <= 0.05 and "wer_long_sequential" in rows["teacher"]
    assert rows["teacher"]["repetition_5gram"] is not None and rows["teacher"]["insertion_rate"] is not None
    assert rows["teacher, batch 8"]["rel_latency_long"] > 0
    assert {r["clip"] for r in report["runs"]} == {"jfk", "sense_and_sensibility_01_austen_64kb-0880", "joined"}
    table = capsys.readouterr().out
    assert "| | params (M) | rel. latency short | rel. latency long |" in table and "| speculative |" in table
    assert "| draft step c | V(1) |" in table
    assert png.stat().st_size > 1000


def test_bench_takes_another_student_for_the_presets_teacher(tmp_path):
    """`--student DIR` measures a candidate from core.distill against the preset's own teacher."""
    student = weights.MODELS_DIR / weights.STUDENT_BASE
    out = tmp_path / "bench.json"
    assert bench.main(["--preset", "local", "--student", str(student), "--data", str(AUDIO), "--limit", "1",
                       "--modes", "student", "--no-peer", "--repeat", "1", "--json", str(out)]) == 0
    environment = json.loads(out.read_text())["environment"]
    assert environment["student"] == str(student.resolve()) and environment["teacher"] == weights.TEACHER_BASE


def test_the_peer_runs_in_a_process_of_its_own():
    """CTranslate2 slows torch in the process it has run in (core/peer.py): the peer must never load here,
    not even after the benchmark above ran both peers."""
    peer = FasterWhisperPeer(1, "int8")
    try:
        text, seconds = peer.transcribe(load_audio(AUDIO / "jfk.wav"))
        assert "country" in text.lower() and seconds > 0
        assert peer.pid != os.getpid()
        assert "ctranslate2" not in sys.modules and "faster_whisper" not in sys.modules
    finally:
        peer.close()
