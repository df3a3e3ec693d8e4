"""The GPU check (tools/gpu_check.py) runs end to end; here tiny random models on the CPU stand in for the
GPU's large-v3-sized ones, so the script a GPU machine runs is the one tested."""

import json
import subprocess
import sys

from conftest import REPO


def test_gpu_check_runs_the_three_loops_and_models_the_ratios(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, "tools/gpu_check.py", "--tiny", "--device", "cpu", "--tokens", "24",
                           "--repeat", "3", "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.loads(out.read_text())
    assert summary["speculative_identical"] is True
    assert summary["loop_tokens"] == {"student": 24, "teacher": 24, "speculative": 24}
    costs = summary["costs"]
    assert costs["teacher_step_s"] > 0 and costs["draft_step_s"] > 0 and len(costs["verify_s"]) == 12
    for acceptance in ("60%", "75%", "90%"):
        modelled = summary["modelled"][f"speculative_at_{acceptance}"]
        assert modelled["decode"] > 0 and 1 <= modelled["draft_tokens"] <= 12
    assert summary["modelled"]["speculative_at_90%"]["decode"] >= summary["modelled"]["speculative_at_60%"]["decode"]
    assert "speculative identical to the teacher: True" in proc.stdout
