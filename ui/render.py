"""Pure helpers that turn results into what the page shows: markdown, tables, chart data, JSON."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from core.metrics import wer
from core.modes import MODES, TRAITS
from core.results import ModelInfo, ModeResult

IDENTICAL_BADGES = {True: "identical to teacher ✔", False: "differs ✘", None: "not compared"}
HISTORY_COLUMNS = ["run", "clip", "preset", "audio s", "mode", "latency s", "RTFx", "WER"]
SEGMENT_COLUMNS = ["start", "end", "text"]

INTRO = "  \n".join(f"**{m.title}**: {m.summary}." for m in TRAITS.values())


@dataclass
class Run:
    """One transcription request as it fills in: the results so far and their subtitle files."""

    clip: str
    source: str  # upload | microphone | youtube
    info: ModelInfo
    audio_s: float
    modes: tuple[str, ...]
    reference: str = ""
    results: dict[str, ModeResult] = field(default_factory=dict)
    subtitles: dict[str, list[Path]] = field(default_factory=dict)

    def wer(self, mode: str) -> float | None:
        if not self.reference.strip() or mode not in self.results:
            return None
        return wer(self.reference, self.results[mode].text)

    def speedup_vs_teacher(self, mode: str) -> float | None:
        teacher, result = self.results.get("teacher"), self.results.get(mode)
        if teacher is None or result is None or result.latency_s <= 0:
            return None
        return teacher.latency_s / result.latency_s

    @property
    def finished(self) -> bool:
        return set(self.results) == set(self.modes)


# ---- header ---------------------------------------------------------------------------------


def header_markdown(info: ModelInfo) -> str:
    encoder = "shared with the teacher" if info.shared_encoder else "its own"
    return (
        f"{INTRO}\n\n"
        f"Preset **{info.preset}**: teacher `{info.teacher}` ({info.teacher_params_m:g} M parameters) · "
        f"student `{info.student}` ({info.student_params_m:g} M; decoder {info.student_decoder_params_m:g} M, "
        f"encoder {encoder}) · {info.device} · {info.dtype} · {info.attention} attention"
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


def run_status(run: Run) -> str:
    done = f"{len(run.results)}/{len(run.modes)} modes done"
    status = f"**{run.clip}** · {run.audio_s:.1f} s of audio · preset {run.info.preset} on {run.info.device} · {done}"
    if run.finished and not any(result.text for result in run.results.values()):
        status += f" · {NO_SPEECH_NOTE}"
    return status


def metrics_markdown(run: Run, mode: str) -> str:
    if mode not in run.modes:
        return "*Not selected for this run.*"
    result = run.results.get(mode)
    if result is None:
        return "*Waiting…*"
    rows = [
        ("Latency", f"**{result.latency_s:.2f} s**"),
        ("RTFx", f"{result.rtfx:.1f}× real time"),
        ("Tokens/s", f"{result.tokens_per_s:.1f} ({result.tokens} tokens)"),
        ("Encoder / decode", f"{result.encoder_s:.2f} s / {result.decode_s:.2f} s"),
    ]
    speedup = run.speedup_vs_teacher(mode)
    if speedup is not None:
        rows.append(("Speed-up vs teacher", f"{speedup:.2f}×"))
    if TRAITS[mode].drafts:
        if result.acceptance_rate is not None:
            rows.append(
                ("Draft acceptance", f"{result.acceptance_rate:.0%} ({result.accepted_tokens} of {result.draft_tokens})")
            )
        rows.append(("Matches teacher", f"**{IDENTICAL_BADGES[result.identical_to_teacher]}**"))
    error_rate = run.wer(mode)
    if error_rate is not None:
        rows.append(("WER", f"{error_rate:.1%}"))
    table = "| Metric | Value |\n|---|---|\n" + "\n".join(f"| {name} | {value} |" for name, value in rows)
    return table + (f"\n\n*{result.note}*" if result.note else "")


def segments_frame(result: ModeResult | None) -> pd.DataFrame | None:
    if result is None or not result.segments:
        return None
    return pd.DataFrame(
        [(round(s.start, 2), round(s.end, 2), s.text) for s in result.segments], columns=SEGMENT_COLUMNS
    )


def latency_frame(run: Run) -> pd.DataFrame:
    """Bar chart data: one bar per finished mode, in the page's column order."""
    rows = [(TRAITS[m].title, round(run.results[m].latency_s, 3)) for m in MODES if m in run.results]
    # explicit dtypes: an empty frame would otherwise make the chart treat latency as a category
    return pd.DataFrame(rows, columns=["mode", "latency s"]).astype({"mode": "str", "latency s": "float64"})


def payload(run: Run) -> dict:
    """What the API returns and the page shows as raw JSON: every timing field of every mode."""
    results = []
    for mode in MODES:
        if mode not in run.results:
            continue
        result = run.results[mode]
        speedup = run.speedup_vs_teacher(mode)
        error_rate = run.wer(mode)
        results.append(
            {
                **result.to_dict(),
                "speedup_vs_teacher": None if speedup is None else round(speedup, 3),
                "wer": None if error_rate is None else round(error_rate, 4),
                "identical_badge": IDENTICAL_BADGES[result.identical_to_teacher] if TRAITS[mode].drafts else None,
                "subtitle_files": [p.name for p in run.subtitles.get(mode, [])],
            }
        )
    return {
        "clip": run.clip,
        "source": run.source,
        "preset": run.info.preset,
        "device": run.info.device,
        "audio_s": round(run.audio_s, 3),
        "reference": run.reference.strip() or None,
        "results": results,
    }


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
                "latency_s": round(run.results[mode].latency_s, 3),
                "rtfx": round(run.results[mode].rtfx, 2),
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
