"""The benchmark end to end on two bundled clips (issue 6): the seed's columns, and speculative = teacher."""

import json

from conftest import AUDIO
from core import bench

COLUMNS = ("params_m", "rel_latency", "rtfx", "tokens_per_s", "wer_short", "wer_long", "acceptance_rate", "peak_rss_mb")


def test_bench_on_two_clips(tmp_path, capsys):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    assert bench.main(["--preset", "local", "--data", str(AUDIO), "--limit", "2", "--long-form",
                       "--json", str(out), "--plot", str(png)]) == 0
    summary = json.loads(out.read_text())
    assert summary["preset"] == "local" and summary["clips"] == 2
    assert summary["speculative_mismatches"] == 0
    assert set(summary["modes"]) == {"student", "teacher", "speculative", "faster-whisper"}
    for mode, figures in summary["modes"].items():
        assert set(COLUMNS) <= set(figures), mode
        assert figures["rtfx"] > 0 and figures["params_m"] > 0
    assert summary["modes"]["teacher"]["rel_latency"] == 1.0
    assert summary["modes"]["teacher"]["wer_short"] == 0.0
    assert summary["modes"]["speculative"]["acceptance_rate"] is not None
    # one encoder pass per clip serves all three modes, though each mode is charged for it
    assert summary["requests"]["wall_s"] < summary["requests"]["modes_charged_s"]
    table = capsys.readouterr().out
    assert "| mode | params (M) | rel. latency | RTFx |" in table and "| speculative |" in table
    assert png.stat().st_size > 1000
