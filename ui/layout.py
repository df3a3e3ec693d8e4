"""The page, declared top to bottom in `build_demo`, its events wired at the end: the input tabs
(`source_tabs`: microphone, live, upload, YouTube) beside the settings (`settings_column`); then
(`results_area`) per mode a column (`mode_column`), the charts, the session history and the raw JSON; the
page's events (`wire_page`) and the API-only endpoints (`wire_api`) last. What each event does lives in
ui.handlers; how its snapshots update the outputs, in ui.view."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from core.modes import MODES, TRAITS
from core.results import ModelInfo
from ui import handlers, render
from ui.models import max_seconds_on
from ui.request import MAX_REPEATS
from ui.view import ModeColumn, PageView

AUDIO_DIR = Path(__file__).resolve().parents[1] / "assets" / "audio"
ATTRIBUTION_FILE = AUDIO_DIR / "ATTRIBUTION.txt"
QUEUE_SIZE = 16  # waiting requests
CACHE_CLEANUP = (3600, 7200)  # every hour, delete uploads and result files older than two hours
LIVE_CHUNK_S = 0.5  # asked of Gradio; measured in this page, its microphone sends 0.1 s chunks
LIVE_TIME_LIMIT_S = 600  # one live session at most (the transcriber's own cap too)
PRECISION_LABELS = {"fp32": "fp32", "int8": "int8 weights, bf16 activations", "bf16": "bf16", "fp16": "fp16"}
MODELS = "models"  # the concurrency group of every event that runs the models: one job at a time
THEME = gr.themes.Soft(primary_hue="blue", secondary_hue="emerald")
CSS = """
.youtube-embed { width: 100%; aspect-ratio: 16 / 9; border: 0; border-radius: 8px; }
.mode-column { min-width: 260px; }
#run-status { min-height: 2.5em; }
.trace-passes { line-height: 1.9; overflow-wrap: anywhere; max-height: 22em; overflow-y: auto; }
.trace .pass { border-right: 2px solid #9ca3af; margin-right: 3px; padding-right: 1px; }
.trace .tok { white-space: pre-wrap; border-radius: 3px; }
.diff { line-height: 1.7; overflow-wrap: anywhere; margin-bottom: 0.6em; }
#playback-audio { width: 100%; }
.playback-hint { font-size: 0.85em; opacity: 0.75; }
.words { line-height: 1.9; max-height: 16em; overflow-y: auto; }
.words .word { cursor: pointer; border-radius: 3px; white-space: pre-wrap; }
.words .word:hover { text-decoration: underline; }
.words .word.word-now { background: #fde68a; color: #111827; }
"""
# Timed words follow the player: media events do not bubble, so one capturing listener on the document
# hears every player the page ever shows; a click on a word moves the player there.
JS = """
() => {
  const light = (audio) => {
    const t = audio.currentTime;
    document.querySelectorAll('.words').forEach((box) => {
      let now = null;
      box.querySelectorAll('.word').forEach((w) => {
        if (!now && t >= parseFloat(w.dataset.start) && t < parseFloat(w.dataset.end)) now = w;
      });
      box.querySelectorAll('.word-now').forEach((w) => { if (w !== now) w.classList.remove('word-now'); });
      if (now) now.classList.add('word-now');
    });
  };
  ['timeupdate', 'seeked', 'play'].forEach((kind) => document.addEventListener(kind, (e) => {
    if (e.target && e.target.id === 'playback-audio') light(e.target);
  }, true));
  document.addEventListener('click', (e) => {
    const word = e.target.closest && e.target.closest('.words .word');
    const audio = document.getElementById('playback-audio');
    if (!word || !audio) return;
    audio.currentTime = parseFloat(word.dataset.start);
    audio.play();
  });
}
"""


def example_clips() -> tuple[list[list[str]], list[str]]:
    """Bundled clips with their reference transcripts, from assets/audio/manifest.jsonl."""
    examples, labels = [], []
    for line in (AUDIO_DIR / "manifest.jsonl").read_text().splitlines():
        if line.strip():
            clip = json.loads(line)
            examples.append([str(AUDIO_DIR / clip["file"]), clip["text"]])
            labels.append(f"{clip['file']} ({clip['duration_s']:.0f} s)")
    return examples, labels


def mode_column(mode: str, info: ModelInfo | None) -> ModeColumn:
    model = ""
    if info is not None:
        traits = TRAITS[mode]
        model = info.student if traits.model == "student" else info.teacher
        if traits.drafts:
            model = f"{info.teacher} + {info.student} drafts"
    with gr.Column(min_width=260, elem_classes="mode-column"):
        gr.Markdown(f"### {TRAITS[mode].title}\n`{model}`")
        return ModeColumn(
            transcript=gr.Textbox(
                label="Transcript", lines=5, max_lines=12, interactive=False, buttons=["copy"], elem_id=f"transcript-{mode}"
            ),
            words=gr.HTML(visible=False, elem_id=f"words-{mode}", label="Timed words"),
            metrics=gr.Markdown(elem_id=f"metrics-{mode}"),
            analysis=gr.HTML(visible=False, elem_id=f"analysis-{mode}",
                             label="Step by step" if TRAITS[mode].drafts else "Word differences"),
            segments=gr.Dataframe(
                headers=render.SEGMENT_COLUMNS, label="Segments", interactive=False, wrap=True,
                column_widths=["18%", "18%", "64%"], max_height=320, visible=False, elem_id=f"segments-{mode}",
            ),
            subtitles=gr.File(
                label="Subtitles (SRT, VTT, JSON)", file_count="multiple", interactive=False,
                visible=False, elem_id=f"subtitles-{mode}",
            ),
        )


def charts() -> tuple[gr.BarPlot, gr.BarPlot, gr.ScatterPlot, gr.ScatterPlot]:
    """Latency, where the time goes, every run of the request, RTFx per run: two a row, room for their titles."""
    with gr.Row():
        run_chart = gr.BarPlot(
            x="mode", y="latency s", color="mode", color_map=_chart_colors(),
            sort=[TRAITS[m].title for m in MODES], y_lim=[0, None], y_title="latency (s)",
            title="Latency (lower is faster)", height=260, elem_id="run-chart",
        )
        timing_chart = gr.BarPlot(
            x="mode", y="seconds", color="part", sort=[TRAITS[m].title for m in MODES], y_lim=[0, None],
            title="Where the time goes (each mode alone)", height=260, elem_id="timing-chart",
        )
    with gr.Row():
        spread_chart = gr.ScatterPlot(
            x="mode", y="latency s", color="mode", color_map=_chart_colors(), y_lim=[0, None],
            title="Every run of this request", height=260, elem_id="spread-chart",
        )
        history_chart = gr.ScatterPlot(
            x="run", y="RTFx", color="mode", color_map=_chart_colors(), y_lim=[0, None],
            title="RTFx per run (higher is faster)", height=260, elem_id="history-chart",
        )
    return run_chart, timing_chart, spread_chart, history_chart


@dataclass
class Sources:
    """Where the audio comes from: the four input tabs."""

    recording: gr.Audio
    mic_button: gr.Button
    live_mode: gr.Radio
    live_audio: gr.Audio
    live_text: gr.Markdown
    live_compare: gr.Checkbox
    live_session: gr.State
    upload: gr.File
    upload_button: gr.Button
    youtube_url: gr.Textbox
    youtube_button: gr.Button
    youtube_embed: gr.HTML


@dataclass
class Settings:
    """What every request carries besides its audio, in the order the handlers take it (`inputs`)."""

    modes: gr.CheckboxGroup
    timestamps: gr.Checkbox
    long_form: gr.Radio
    language: gr.Radio
    reference: gr.Textbox
    repeats: gr.Slider
    word_timestamps: gr.Checkbox
    precision: gr.Radio

    @property
    def inputs(self) -> list:
        return [self.modes, self.timestamps, self.long_form, self.language, self.reference, self.repeats,
                self.word_timestamps, self.precision]


def source_tabs(cap_minutes: int, reference: gr.Textbox) -> Sources:
    """Microphone, live, upload (with the example clips, which fill `reference` too) and YouTube."""
    examples, example_labels = example_clips()
    with gr.Tabs():
        with gr.Tab("Microphone", id="microphone"):
            recording = gr.Audio(sources=["microphone"], type="filepath", label="Recording", elem_id="mic-audio")
            mic_button = gr.Button("Transcribe recording", variant="primary", elem_id="transcribe-mic")
        with gr.Tab("Live", id="live"):
            live_mode = gr.Radio(
                [(TRAITS[m].title, m) for m in MODES], value="student",
                label="Mode for the live text (the student is the one built to keep up)", elem_id="live-mode",
            )
            live_audio = gr.Audio(sources=["microphone"], streaming=True, type="numpy", label="Speak",
                                  elem_id="live-audio")
            live_text = gr.Markdown("*Press Record and speak.*", elem_id="live-text")
            live_compare = gr.Checkbox(label="When I stop, also run the chosen modes on the whole recording",
                                       value=True, elem_id="live-compare")
            live_session = gr.State(None)
        with gr.Tab("Upload", id="upload"):
            upload = gr.File(label="Audio or video file", file_types=["audio", "video"], type="filepath",
                             elem_id="upload-file")
            upload_button = gr.Button("Transcribe file", variant="primary", elem_id="transcribe-upload")
            gr.Examples(examples, inputs=[upload, reference], example_labels=example_labels,
                        label="Example clips (fills the file and its reference transcript)")
        with gr.Tab("YouTube", id="youtube"):
            youtube_url = gr.Textbox(
                label="YouTube video link", placeholder="https://www.youtube.com/watch?v=…",
                info=f"One video, up to {cap_minutes} min.", value=None, elem_id="youtube-url",
            )
            youtube_button = gr.Button("Fetch and transcribe", variant="primary", elem_id="transcribe-youtube")
            youtube_embed = gr.HTML(elem_id="youtube-embed")
    return Sources(recording, mic_button, live_mode, live_audio, live_text, live_compare, live_session, upload,
                   upload_button, youtube_url, youtube_button, youtube_embed)


def settings_column(info: ModelInfo | None, reference: gr.Textbox) -> Settings:
    modes = gr.CheckboxGroup([(TRAITS[m].title, m) for m in MODES], value=list(MODES), label="Modes",
                             elem_id="modes")
    timestamps = gr.Checkbox(label="Timestamps (segments and SRT / VTT / JSON files)", value=False,
                             elem_id="timestamps")
    word_timestamps = gr.Checkbox(
        label="Word timestamps (each word lit as the clip plays; a click plays from there)",
        value=False, elem_id="word-timestamps",
    )
    long_form = gr.Radio(
        [("Chunked (batched, fast)", "chunked"), ("Sequential (OpenAI's sliding window)", "sequential")],
        value="chunked", label="Long-form algorithm (audio over 30 s)", elem_id="long-form",
    )
    language = gr.Radio([("English", "en"), ("Auto-detect", "auto")], value="en", label="Language",
                        elem_id="language")
    offered = info.precisions if info is not None else ("fp32",)
    precision = gr.Radio(
        [(PRECISION_LABELS.get(p, p), p) for p in offered], value=offered[0],
        label="Decoder precision (every mode; speculative stays the teacher's output in each)",
        elem_id="precision", visible=len(offered) > 1,
    )
    repeats = gr.Slider(1, MAX_REPEATS, value=1, step=1, label="Repeat runs (interleaved): median and spread",
                        elem_id="repeats")
    reference.render()
    return Settings(modes, timestamps, long_form, language, reference, repeats, word_timestamps, precision)


def results_area(info: ModelInfo | None, live: Sources) -> PageView:
    """Status and player, a column per mode, the charts, the session history and the raw JSON."""
    run_status = gr.Markdown(elem_id="run-status")
    playback = gr.HTML(visible=False, elem_id="playback")
    with gr.Row(equal_height=False):
        columns = {mode: mode_column(mode, info) for mode in MODES}
    run_chart, timing_chart, spread_chart, history_chart = charts()
    history_table = gr.Dataframe(headers=render.HISTORY_COLUMNS, label="Runs this session", interactive=False,
                                 elem_id="history-table")
    run_export = gr.File(label="This run as JSON (the benchmark's schema)", visible=False, elem_id="run-export")
    with gr.Accordion("Raw results (JSON, as the API returns them)", open=False):
        raw_json = gr.JSON(label="results", show_label=False, elem_id="raw-json")
    return PageView(
        columns=columns, run_status=run_status, playback=playback, run_chart=run_chart, timing_chart=timing_chart,
        spread_chart=spread_chart, raw_json=raw_json, run_export=run_export, history_table=history_table,
        history_chart=history_chart, history=gr.State([]), live_text=live.live_text, live_session=live.live_session,
    )


def build_demo(info: ModelInfo | None, load_error: str | None = None) -> gr.Blocks:
    """The whole page. Without `info` (models failed to load) it shows the error instead of the controls."""
    ready = info is not None
    with gr.Blocks(title="Distil-Whisper Arena", delete_cache=CACHE_CLEANUP) as demo:
        gr.Markdown("# Distil-Whisper Arena")
        header = render.header_markdown(info) if ready else render.load_error_markdown(load_error or "")
        gr.Markdown(header, elem_id="header")
        with gr.Column(visible=ready, elem_id="arena"):
            reference = gr.Textbox(
                label="Reference transcript (optional: gives the WER of each mode)", value="", lines=2, render=False,
                elem_id="reference",
            )
            with gr.Row(equal_height=False):
                with gr.Column(scale=3):
                    sources = source_tabs(max_seconds_on(info.device if ready else "CPU") // 60, reference)
                with gr.Column(scale=2):
                    settings = settings_column(info, reference)
            view = results_area(info, sources)
            api_subtitles = gr.File(label="subtitle files", file_count="multiple", visible=False)
        gr.Markdown(
            "Example clips: John F. Kennedy's inaugural address (public domain), LibriVox readings (public domain), "
            "CMU Sphinx test data (BSD-2), Asterisk prompts voiced by Allison Smith (CC-BY-SA 3.0). Sources and licences: "
            f"[assets/audio/ATTRIBUTION.txt](/gradio_api/file={ATTRIBUTION_FILE}).",
            elem_id="attribution",
        )
        wire_page(sources, settings, view)
        wire_api(sources, settings, view, api_subtitles)
    return demo


def wire_page(sources: Sources, settings: Settings, view: PageView) -> None:
    """The page's events: each source's button (or the end of a live recording) runs the chosen modes."""
    options, history = settings.inputs, view.history
    page_event = dict(outputs=view.outputs, concurrency_id=MODELS, api_visibility="private",
                      show_progress_on=[view.run_status])
    sources.upload_button.click(view.shows(handlers.transcribe_upload), [sources.upload, *options, history],
                                **page_event)
    sources.mic_button.click(view.shows(handlers.transcribe_microphone), [sources.recording, *options, history],
                             **page_event)
    live_audio, live_session = sources.live_audio, sources.live_session
    live_audio.start_recording(lambda: None, outputs=live_session, api_visibility="private")
    live_audio.stream(
        handlers.live_chunk, [live_audio, live_session, sources.live_mode], [sources.live_text, live_session],
        stream_every=LIVE_CHUNK_S, time_limit=LIVE_TIME_LIMIT_S, api_visibility="private", show_progress="hidden",
        concurrency_limit=None,  # instant: it only queues the chunk (decoding runs on the session's thread)
    )
    live_audio.stop_recording(
        view.shows(handlers.live_stop), [live_session, sources.live_compare, *options, history], view.live_outputs,
        concurrency_id=MODELS, api_visibility="private", show_progress_on=[view.run_status],
    )
    gr.on(
        [sources.youtube_button.click, sources.youtube_url.submit], handlers.show_youtube_embed, sources.youtube_url,
        sources.youtube_embed, concurrency_limit=None, show_progress="hidden", api_visibility="private",
    ).success(view.shows(handlers.transcribe_youtube_video), [sources.youtube_url, *options, history], **page_event)
    # the embed is instant, even behind a running job


def wire_api(sources: Sources, settings: Settings, view: PageView, api_subtitles: gr.File) -> None:
    """API-only endpoints: no trigger in the page; only the first input has no default."""
    api_event = dict(outputs=[view.raw_json, api_subtitles], concurrency_id=MODELS)
    gr.on([], handlers.transcribe_file, [sources.upload, *settings.inputs], api_name="transcribe_file", **api_event)
    gr.on([], handlers.transcribe_youtube, [sources.youtube_url, *settings.inputs], api_name="transcribe_youtube",
          **api_event)


def _chart_colors() -> dict[str, str]:
    return {m.title: m.colour for m in TRAITS.values()}
