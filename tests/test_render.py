"""The arena view's pieces, without a browser: the trace, the word differences, the language guard."""

from dataclasses import replace

from core.engine import Options
from core.results import DraftPass, ModelInfo, ModeResult, Timing, WindowReport
from ui import render
from ui.run import Run

INFO = ModelInfo("local", "whisper-base", "distil-whisper-base", 72.6, 55.8, 8.4, 6, 2, "CPU", "float32",
                 ("fp32", "int8"), "sdpa", True, True, True)


def result(mode: str, text: str, **fields) -> ModeResult:
    return ModeResult(mode=mode, model="m", text=text, segments=None, tokens=len(text.split()), timing=Timing(verify_s=1.0),
                      audio_s=3.0, algorithm="short-form", precision="fp32", batch_size=1, model_passes=6,
                      windows=[WindowReport(0.0, 3.0, text, 0.0, 1, False, False, False)], language="en",
                      detected_language="en", **fields)


def run_of(*results, reference="") -> Run:
    run = Run("clip.wav", "upload", INFO, 3.0, Options(), reference)
    for r in results:
        run.add(r)
    return run


def test_trace_draws_kept_rejected_and_teacher_tokens_in_three_colours():
    spec = result("speculative", "Go forward 10 meters.", draft_tokens=5, accepted_tokens=3, trace=[
        DraftPass(0, (), 0, 1, (), " Go"),
        DraftPass(0, (2, 3, 4), 2, 9, (" forward", " 10", "m"), " meters"),
        DraftPass(0, (5,), 1, None, (".",), None),
    ])
    html = render.trace_html(spec, result("teacher", "Go forward 10 meters."))
    assert html.count('class="pass"') == 3
    assert 'tok-accepted" style="color:#166534' in html and 'tok-rejected" style="color:#b91c1c' in html
    assert "line-through" in html.split('tok-rejected"')[1].split(">")[0]
    assert 'tok-teacher" style="color:#1d4ed8' in html and "3 teacher passes" in html and "for the teacher alone" in html


def test_word_differences_mark_what_the_student_got_wrong():
    html = render.diff_html("go forward ten meters", "go forward 10m", "teacher")
    assert 'class="diff-substitute"' in html and "teacher: meters" in html
    run = run_of(result("student", "Go forward 10m."), result("teacher", "Go forward 10 meters."),
                 reference="go forward ten meters")
    assert run.wer_vs_teacher("student") > 0 and run.wer_vs_teacher("teacher") is None
    assert {"vs_teacher", "vs_reference"} == set(render.diffs(run, "student"))
    assert "Against the teacher" in render.analysis_html(run, "student")


def test_the_language_guard_warns_when_the_student_cannot_follow():
    german = replace(result("student", "Guten Morgen"), detected_language="de", language="de")
    run = run_of(german)
    assert "detected **de**" in render.run_status(run) and "distilled on English only" in render.run_status(run)
    assert "⚠️" not in render.run_status(run_of(result("student", "Good morning")))
    english_only = replace(result("teacher", "hello"), language=None, detected_language=None)
    run = Run("c", "upload", replace(INFO, multilingual=False), 3.0, Options(language=None))
    run.add(english_only)
    assert "English-only" in render.run_status(run) and "auto-detect does not apply" in render.run_status(run)


def test_repeated_runs_show_the_median_and_the_spread():
    run = Run("clip.wav", "upload", INFO, 3.0, Options(modes=("teacher",)), repeats=3)
    for seconds in (1.0, 3.0, 2.0):
        run.add(replace(result("teacher", "x"), timing=Timing(verify_s=seconds)))
    assert run.finished and run.latency("teacher") == 2.0 and run.results["teacher"].latency_s == 2.0
    assert "median of 3: 1.00–3.00 s" in render.metrics_markdown(run, "teacher")
    assert len(render.spread_frame(run)) == 3
    assert set(render.timing_frame(run)["part"]) == {"decoding / verifying"}
