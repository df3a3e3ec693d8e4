"""Pure helpers that turn a run (ui.run) into what the page shows: markdown, HTML, tables, chart data, JSON.

Header, one run (status, metrics, trace, word differences, chart data, the API payload), the session
history, the live text; nothing here keeps state."""

from __future__ import annotations

import html

import pandas as pd

from core.metrics import wer, word_diff
from core.modes import MODES, TRAITS
from core.report import report, run_entry
from core.results import ModelInfo, ModeResult
from ui.run import Run

IDENTICAL_BADGES = {True: "identical to teacher ✔", False: "differs ✘", None: "not compared"}
HISTORY_COLUMNS = ["run", "clip", "preset", "audio s", "mode", "latency s", "RTFx", "WER"]
SEGMENT_COLUMNS = ["start", "end", "text"]
TIMING_PARTS = (("features", ("vad_s", "features_s")), ("encoder", ("encoder_s",)), ("judge", ("judge_s",)),
                ("drafting", ("draft_s",)), ("decoding / verifying", ("verify_s",)), ("word timing", ("words_s",)))
# the speculative trace: a kept draft token, the first rejected one, the teacher's own token
ACCEPTED = ("#166534", "#dcfce7")
REJECTED = ("#b91c1c", "#fee2e2")
TEACHER = ("#1d4ed8", "#dbeafe")
DIFF_STYLES = {
    "substitute": "color:#9a3412;background:#ffedd5;text-decoration:underline wavy #ea580c",
    "insert": "color:#b91c1c;background:#fee2e2;font-weight:600",
    "delete": "color:#6b7280;text-decoration:line-through",
}
MAX_TRACE_PASSES = 400  # longer traces are cut (the JSON export has them all)
LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French", "es": "Spanish", "it": "Italian", "nl": "Dutch",
                  "pt": "Portuguese", "ru": "Russian", "zh": "Chinese", "ja": "Japanese", "pl": "Polish",
                  "uk": "Ukrainian", "yue": "Cantonese"}

INTRO = "  \n".join(f"**{m.title}**: {m.summary}." for m in TRAITS.values())


# ---- header ---------------------------------------------------------------------------------


def header_markdown(info: ModelInfo) -> str:
    encoder = "shared with the teacher" if info.shared_encoder else "its own"
    languages = "multilingual" if info.multilingual else "English-only"
    return (
        f"{INTRO}\n\n"
        f"Preset **{info.preset}**: teacher `{info.teacher}` ({info.teacher_params_m:g} M parameters, "
        f"{info.teacher_decoder_layers} decoder layers) · student `{info.student}` ({info.student_params_m:g} M; "
        f"{info.student_decoder_layers} decoder layers, decoder {info.student_decoder_params_m:g} M, encoder {encoder}) · "
        f"{languages} · {info.device} · {info.dtype} · {info.attention} attention"
    )


def load_error_markdown(message: str) -> str:
    return (
        f"{INTRO}\n\n"
        "### ⚠️ The models could not be loaded\n\n"
        f"{message}\n\n"
        "**How to fix:** set the models up with `make setup` (or `python -m core setup`), or pick a preset "
        "this machine can load with `python app.py --preset local` (or `ARENA_PRESET=local`), then restart the app."
    )


def youtube_embed(embed_url: str) -> str:
    return (
        f'<iframe class="youtube-embed" src="{html.escape(embed_url, quote=True)}" title="YouTube video" '
        'allow="encrypted-media; picture-in-picture" allowfullscreen referrerpolicy="strict-origin-when-cross-origin"></iframe>'
    )


# ---- one run ----------------------------------------------------------------------------------


NO_SPEECH_NOTE = "**no speech found** (silence, noise or too short a clip): nothing to transcribe"


def language_note(run: Run) -> str:
    """What language was heard, and a warning where the student cannot follow it."""
    result = next(iter(run.results.values()), None)
    if result is None:
        return ""
    if result.language is None:
        return "English-only models: the language is English" + (" (auto-detect does not apply)"
                                                                  if run.options.language is None else "")
    heard = result.detected_language
    note = f"language **{result.language}**" + (f", detected **{heard}**" if heard else "")
    if heard and heard != "en" and "student" in run.modes and run.info.student_english_only:
        name = LANGUAGE_NAMES.get(heard, heard)
        note += (f" · ⚠️ **This sounds like {name}: the student was distilled on English only**, so its column "
                 "garbles or translates it; trust the teacher (speculative decoding is the teacher's output).")
    elif heard and result.language != heard:
        note += f" · ⚠️ the teacher hears {LANGUAGE_NAMES.get(heard, heard)} but decodes as {result.language}"
    return note


def run_status(run: Run) -> str:
    done = f"{len(run.results)}/{len(run.modes)} modes done"
    if run.repeats > 1:
        rounds = min((len(run.latencies.get(m, [])) for m in run.modes), default=0)
        done += f" · round {rounds}/{run.repeats}"
    status = f"**{run.clip}** · {run.audio_s:.1f} s of audio · preset {run.info.preset} on {run.info.device} · {done}"
    note = language_note(run)
    if note:
        status += f" · {note}"
    if run.finished and not any(result.text for result in run.results.values()):
        status += f" · {NO_SPEECH_NOTE}"
    return status


def _safeguards(result: ModeResult) -> str:
    windows = result.windows
    fell_back = [w for w in windows if w.attempts > 1]
    parts = [f"{len(windows)} window{'s' * (len(windows) != 1)}"]
    if fell_back:
        parts.append(f"⚠️ {len(fell_back)} fell back (temperature up to {max(w.temperature for w in fell_back):g})")
    if any(w.looped for w in windows):
        parts.append(f"⚠️ {sum(w.looped for w in windows)} cut for looping")
    if any(w.suspect for w in windows):
        parts.append(f"⚠️ {sum(w.suspect for w in windows)} still doubtful")
    if any(w.repaired for w in windows):
        parts.append(f"{sum(w.repaired for w in windows)} decoded again in halves (stopped early)")
    if any(w.no_speech for w in windows):
        parts.append(f"{sum(w.no_speech for w in windows)} dropped as no speech")
    return ", ".join(parts)


def metrics_markdown(run: Run, mode: str) -> str:
    if mode not in run.modes:
        return "*Not selected for this run.*"
    result = run.results.get(mode)
    if result is None:
        return "*Waiting…*"
    latency = run.latency(mode)
    spread = run.latencies[mode]
    latency_text = f"**{latency:.2f} s**"
    if len(spread) > 1:
        latency_text += f" (median of {len(spread)}: {min(spread):.2f}–{max(spread):.2f} s)"
    t = result.timing
    rows = [
        ("Latency", latency_text),
        ("RTFx", f"{result.audio_s / latency:.1f}× real time" if latency > 0 else "–"),
        ("Tokens/s", f"{result.tokens / latency:.1f} ({result.tokens} tokens)" if latency > 0 else "–"),
        ("Features / encoder / decode", f"{t.vad_s + t.features_s:.2f} / {t.encoder_s:.2f} / {t.decode_s:.2f} s"),
        ("Decoder precision", result.precision),
    ]
    if t.words_s > 0:
        rows.append(("Word timing", f"{t.words_s:.2f} s ({t.words_s / latency:.0%} of the latency)"))
    speedup = run.speedup_vs_teacher(mode)
    if speedup is not None and mode != "teacher":
        teacher = run.results["teacher"]
        note = ""
        if result.batch_size != teacher.batch_size:
            note = f" (teacher {teacher.batch_size} windows at a time, this mode {result.batch_size})"
        rows.append(("Speed-up vs teacher", f"{speedup:.2f}×{note}"))
    if TRAITS[mode].drafts:
        if result.acceptance_rate is not None:
            rows.append(("Draft acceptance", f"{result.acceptance_rate:.0%} ({result.accepted_tokens} of {result.draft_tokens})"))
        teacher = run.results.get("teacher")
        alone = f" (the teacher alone: {teacher.model_passes})" if teacher else ""
        rows.append(("Teacher passes", f"{result.model_passes}{alone}, {result.tokens_per_pass or 0:.2f} tokens each"))
        rows.append(("Matches teacher", f"**{IDENTICAL_BADGES[result.identical_to_teacher]}**"))
    fidelity = run.wer_vs_teacher(mode)
    if fidelity is not None and not TRAITS[mode].drafts:
        rows.append(("WER vs teacher", f"{fidelity:.1%}"))
    error_rate = run.wer(mode)
    if error_rate is not None:
        rows.append(("WER", f"{error_rate:.1%}"))
    rows.append(("Safeguards", _safeguards(result)))
    if result.peak_gpu_mb is not None:
        rows.append(("Peak GPU memory", f"{result.peak_gpu_mb:.0f} MB"))
    table = "| Metric | Value |\n|---|---|\n" + "\n".join(f"| {name} | {value} |" for name, value in rows)
    return table + (f"\n\n*{result.note}*" if result.note else "")


def _piece(text: str, colours: tuple[str, str], kind: str, strike: bool = False) -> str:
    decoration = "text-decoration:line-through;" if strike else ""
    return (f'<span class="tok tok-{kind}" style="color:{colours[0]};background:{colours[1]};{decoration}">'
            f"{html.escape(text)}</span>")


def trace_html(result: ModeResult, teacher: ModeResult | None) -> str:
    """Speculative decoding drawn as teacher passes: each pass's kept draft tokens, its first rejected draft
    token and the teacher's own token, in three colours."""
    passes = result.trace
    if not passes:
        return ""
    alone = f" against {teacher.model_passes} for the teacher alone" if teacher else ""
    summary = (f"<b>{len(passes)} teacher passes</b>{alone}; {result.tokens_per_pass or 0:.2f} tokens per pass; "
               f"{result.acceptance_rate or 0:.0%} of {result.draft_tokens or 0} drafted tokens accepted.")
    legend = " ".join((_piece("kept draft", ACCEPTED, "legend-accepted"), _piece("rejected draft", REJECTED, "legend-rejected", True),
                       _piece("teacher's token", TEACHER, "legend-teacher")))
    shown = []
    window = None
    for p in passes[:MAX_TRACE_PASSES]:
        if p.window != window and window is not None:
            shown.append('<span class="window-break"> ‖ </span>')
        window = p.window
        pieces = [_piece(t, ACCEPTED, "accepted") for t in p.draft_text[: p.accepted]]
        if p.accepted < len(p.draft_text):
            pieces.append(_piece(p.draft_text[p.accepted], REJECTED, "rejected", strike=True))
        if p.emitted_text is not None:
            pieces.append(_piece(p.emitted_text, TEACHER, "teacher"))
        shown.append(f'<span class="pass" title="draft of {len(p.draft)}, {p.accepted} kept">{"".join(pieces)}</span>')
    cut = (f"<p><i>First {MAX_TRACE_PASSES} of {len(passes)} passes shown; the JSON export has all.</i></p>"
           if len(passes) > MAX_TRACE_PASSES else "")
    return (f'<div class="trace"><p>{summary}</p><p>{legend}</p>'
            f'<div class="trace-passes">{"".join(shown)}</div>{cut}</div>')


def diff_html(reference: str, hypothesis: str, against: str) -> str:
    """The hypothesis's words against a reference (normalised): substitutions, insertions, deletions marked."""
    words = []
    for op, ref, hyp in word_diff(reference, hypothesis):
        if op == "equal":
            words.append(html.escape(hyp))
        elif op == "delete":
            words.append(f'<span class="diff-delete" style="{DIFF_STYLES["delete"]}" title="missing">{html.escape(ref)}</span>')
        else:
            title = f"{against}: {ref}" if op == "substitute" else f"not in the {against}"
            words.append(f'<span class="diff-{op}" style="{DIFF_STYLES[op]}" title="{html.escape(title)}">{html.escape(hyp)}</span>')
    rate = wer(reference, hypothesis)
    return (f'<div class="diff"><b>Against the {against}</b> (WER {rate:.1%}): '
            f'{" ".join(words) or "<i>(nothing said)</i>"}</div>')


def analysis_html(run: Run, mode: str) -> str:
    """Why a mode is fast or wrong: the trace for speculative decoding; word differences otherwise."""
    result = run.results.get(mode)
    if result is None:
        return ""
    if TRAITS[mode].drafts:
        return trace_html(result, run.results.get("teacher"))
    parts = []
    teacher = run.results.get("teacher")
    if mode != "teacher" and teacher is not None:
        parts.append(diff_html(teacher.text, result.text, "teacher"))
    if run.reference.strip():
        parts.append(diff_html(run.reference, result.text, "reference"))
    return "".join(parts)


def diffs(run: Run, mode: str) -> dict:
    """The word differences as data (the API's `diff`)."""
    result = run.results[mode]
    out = {}
    if mode != "teacher" and "teacher" in run.results and not TRAITS[mode].drafts:
        out["vs_teacher"] = [list(x) for x in word_diff(run.results["teacher"].text, result.text)]
    if run.reference.strip():
        out["vs_reference"] = [list(x) for x in word_diff(run.reference, result.text)]
    return out


def segments_frame(result: ModeResult | None) -> pd.DataFrame | None:
    if result is None or not result.segments:
        return None
    return pd.DataFrame(
        [(round(s.start, 2), round(s.end, 2), s.text) for s in result.segments], columns=SEGMENT_COLUMNS
    )


def words_html(result: ModeResult | None) -> str:
    """The transcript as timed words: the page's script lights the word being spoken while the clip plays
    and moves the player to a word clicked (empty without word times)."""
    words = [w for s in (result.segments or []) for w in (s.words or [])] if result else []
    if not words:
        return ""
    spans = "".join(
        f'<span class="word" data-start="{w.start_s:.2f}" data-end="{w.end_s:.2f}" '
        f'title="{w.start_s:.2f}–{w.end_s:.2f} s · p {w.probability:.2f}">{html.escape(w.text)}</span>'
        for w in words)
    return f'<div class="words" title="Click a word to play from there">{spans}</div>'


def playback_html(url: str | None) -> str:
    """The clip's player, the one the timed words follow."""
    if not url:
        return ""
    return (f'<audio id="playback-audio" controls preload="auto" src="{html.escape(url)}"></audio>'
            '<div class="playback-hint">Timed words light up as the clip plays; click a word to jump there.</div>')


def latency_frame(run: Run) -> pd.DataFrame:
    """Bar chart data: one bar per finished mode (its median latency), in the page's column order."""
    rows = [(TRAITS[m].title, round(run.latency(m), 3)) for m in MODES if m in run.results]
    # explicit dtypes: an empty frame would otherwise make the chart treat latency as a category
    return pd.DataFrame(rows, columns=["mode", "latency s"]).astype({"mode": "str", "latency s": "float64"})


def timing_frame(run: Run) -> pd.DataFrame:
    """Stacked bars: where each mode's time went (features, encoder, the teacher's judge step, drafting,
    decoding), each part charged as if the mode had run alone."""
    rows = []
    for m in MODES:
        if m in run.results:
            timing = run.results[m].timing
            for part, names in TIMING_PARTS:
                seconds = sum(getattr(timing, n) for n in names)
                if seconds > 0:
                    rows.append((TRAITS[m].title, part, round(seconds, 3)))
    return pd.DataFrame(rows, columns=["mode", "part", "seconds"]).astype({"mode": "str", "part": "str", "seconds": "float64"})


def spread_frame(run: Run) -> pd.DataFrame:
    """Every measured latency, one point per run and mode: the spread of repeated runs."""
    rows = [(TRAITS[m].title, i + 1, round(s, 3)) for m in MODES for i, s in enumerate(run.latencies.get(m, []))]
    return pd.DataFrame(rows, columns=["mode", "round", "latency s"]).astype(
        {"mode": "str", "round": "int64", "latency s": "float64"})


def payload(run: Run) -> dict:
    """What the API returns, the page shows as raw JSON and the export writes: core/report.py's schema
    (the benchmark's), with per mode the page's extras: speed-up, WER, fidelity, word differences."""
    results = [run.results[m] for m in MODES if m in run.results]
    entry = run_entry(run.clip, run.source, run.audio_s, run.reference.strip() or None, run.options, results)
    for data in entry["results"]:
        mode = data["mode"]
        speedup, error_rate, fidelity = run.speedup_vs_teacher(mode), run.wer(mode), run.wer_vs_teacher(mode)
        data.update(
            latency_s=round(run.latency(mode), 4),
            latencies_s=[round(x, 4) for x in run.latencies[mode]],
            speedup_vs_teacher=None if speedup is None else round(speedup, 3),
            wer=None if error_rate is None else round(error_rate, 4),
            wer_vs_teacher=None if fidelity is None else round(fidelity, 4),
            identical_badge=IDENTICAL_BADGES[data["identical_to_teacher"]] if TRAITS[mode].drafts else None,
            diff=diffs(run, mode),
            subtitle_files=[p.name for p in run.subtitles.get(mode, [])],
        )
    entry["repeats"] = run.repeats
    entry["language_note"] = language_note(run) or None
    return report(run.info, [entry])


# ---- session history --------------------------------------------------------------------------


def history_entry(run: Run, number: int) -> dict:
    """A finished run, reduced to what the history table and chart need (kept in gr.State)."""
    return {
        "run": number,
        "clip": run.clip,
        "preset": run.info.preset,
        "audio_s": round(run.audio_s, 2),
        "modes": [
            {
                "mode": mode,
                "latency_s": round(run.latency(mode), 3),
                "rtfx": round(run.audio_s / run.latency(mode), 2) if run.latency(mode) > 0 else 0.0,
                "wer": run.wer(mode),
            }
            for mode in MODES
            if mode in run.results
        ],
    }


def history_table(history: list[dict]) -> pd.DataFrame:
    rows = [
        (
            entry["run"], entry["clip"], entry["preset"], entry["audio_s"], TRAITS[m["mode"]].title,
            m["latency_s"], m["rtfx"], "" if m["wer"] is None else f"{m['wer']:.1%}",
        )
        for entry in reversed(history)  # newest first
        for m in entry["modes"]
    ]
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def history_chart(history: list[dict]) -> pd.DataFrame:
    rows = [(f"#{entry['run']}", TRAITS[m["mode"]].title, m["rtfx"]) for entry in history for m in entry["modes"]]
    return pd.DataFrame(rows, columns=["run", "mode", "RTFx"]).astype({"run": "str", "mode": "str", "RTFx": "float64"})


def live_markdown(state) -> str:
    """Committed words in full, the unconfirmed tail in grey, then the live latency figures."""
    committed = f'<span id="live-committed">{html.escape(state.committed_text)}</span>' if state.committed_text else ""
    tentative = (f' <span id="live-tentative" style="color:#9ca3af">{html.escape(state.tentative_text)}</span>'
                 if state.tentative_text else "")
    text = committed + tentative or "<em>Listening…</em>"
    median, p95 = state.latency_median_s, state.latency_p95_s
    figures = [f"{state.audio_s:.1f} s heard", f"buffer {state.buffer_s:.1f} s", f"{state.decodes} updates"]
    if state.finished:
        figures.insert(0, "stopped")
    if median is not None:
        figures.append(f"commit latency median {median:.2f} s, p95 {p95:.2f} s")
    if state.decodes:
        figures.append(f"update RTFx {state.rtfx:.1f}")
    notice = f"\n\n**{html.escape(state.message)}**" if state.message else ""
    return f'<div id="live-words">{text}</div>\n\n<small>{" · ".join(figures)}</small>{notice}'
