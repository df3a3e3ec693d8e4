"""Event handlers: get audio from an upload, the microphone or YouTube, run the selected modes,
and stream the page (or API) updates as each mode finishes."""

from ui.gpu import LIVE_UPDATE_S, gpu, seconds_for  # noqa: I001 - must precede the torch import that core brings in

import html
import json
import logging
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import gradio as gr
import numpy as np

from core.audio import duration_s, load_audio, probe
from core.engine import Arena, Options
from core.errors import ArenaError
from core.modes import MODES
from core.streaming import LiveSession, LiveTranscriber
from core.subtitles import SUBTITLE_FORMATS, write_subtitles
from core.youtube import fetch_audio, parse_youtube_url
from ui import render
from ui.render import Run

MAX_SECONDS_CPU = 10 * 60
MAX_SECONDS_GPU = 60 * 60
MAX_REPEATS = 5
MODE_OUTPUTS = 5  # per mode column: transcript, metrics, analysis, segments, subtitle files
PAGE_OUTPUTS = MODE_OUTPUTS * len(MODES) + 9  # what _stream_page yields per update (see ui.layout)

log = logging.getLogger(__name__)

# Module-level so `spaces.GPU` functions never carry the models in their arguments.
_arena: Arena | None = None
_load_error: str | None = None


def attach(arena: Arena | None, load_error: str | None = None) -> None:
    """Give the handlers the loaded models, or the reason they could not be loaded."""
    global _arena, _load_error
    _arena, _load_error = arena, load_error


def max_seconds_on(device: str) -> int:
    """Longest clip accepted: transcribing an hour takes too long on a CPU."""
    return MAX_SECONDS_CPU if device == "CPU" else MAX_SECONDS_GPU


# ---- GPU time asked for (ZeroGPU): from the audio's length, read from its header ----------------


def _file_gpu_s(file, modes, timestamps, long_form, language, reference, repeats=1, *_, **__) -> int:
    try:
        audio_s = probe(file).duration_s if file else None
    except ArenaError:
        audio_s = 0.0  # refused before any model runs
    return seconds_for(audio_s, len(modes or MODES), _count(repeats))


def _link_gpu_s(url, modes, timestamps, long_form, language, reference, repeats=1, *_, **__) -> int:
    return seconds_for(None, len(modes or MODES), _count(repeats))  # the length is known only after downloading


def _live_gpu_s(session, compare, modes, timestamps, long_form, language, reference, repeats=1, *_, **__) -> int:
    heard = session.state.audio_s if session is not None else 0.0
    return seconds_for(heard, len(modes or MODES) if compare else 0, _count(repeats)) + LIVE_UPDATE_S


def _count(repeats) -> int:
    try:
        return max(1, int(repeats or 1))
    except (TypeError, ValueError):
        return 1


@gpu(duration=60)
def warm_up() -> None:
    """One short pass per mode so the first request doesn't pay for lazy set-up (on a GPU, in a GPU context)."""
    if _arena is not None:
        _arena.warmup()


class _GpuModels:
    """The arena as a live session's own thread calls it: every update is a GPU function of its own."""

    def __init__(self, arena: Arena):
        self.multilingual = arena.multilingual

    def transcribe(self, audio, options):
        return _live_update(audio, options)

    def detect_language(self, audio):
        return _live_language(audio)


@gpu(duration=LIVE_UPDATE_S)
def _live_update(audio, options):
    return _require_arena().transcribe(audio, options)


@gpu(duration=LIVE_UPDATE_S)
def _live_language(audio):
    return _require_arena().detect_language(audio)


# ---- event handlers: page ---------------------------------------------------------------------
# Each yields, in order: MODE_OUTPUTS values per mode column (transcript, metrics, analysis, segments,
# subtitle files) for student, teacher, speculative; then run status, latency chart, timing chart, spread
# chart, raw JSON, run export, history table, history chart, history state. ui.layout lists the output
# components in the same order.


@gpu(duration=_file_gpu_s)
def transcribe_upload(file, modes, timestamps, long_form, language, reference, repeats, history,
                      progress=gr.Progress()):
    with _user_errors(), tempfile.TemporaryDirectory(prefix="arena-run-") as out_dir:
        options = _options(modes, timestamps, long_form, language)
        audio, clip = _file_audio(file, "Upload an audio or video file first.")
        runs = _stream_run(clip, "upload", audio, options, reference, repeats, out_dir, progress)
        yield from _stream_page(runs, history, out_dir)


@gpu(duration=_file_gpu_s)
def transcribe_microphone(recording, modes, timestamps, long_form, language, reference, repeats, history,
                          progress=gr.Progress()):
    with _user_errors(), tempfile.TemporaryDirectory(prefix="arena-run-") as out_dir:
        options = _options(modes, timestamps, long_form, language)
        audio, _ = _file_audio(recording, "Record something first: press Record, speak, then Stop.")
        runs = _stream_run("microphone", "microphone", audio, options, reference, repeats, out_dir, progress)
        yield from _stream_page(runs, history, out_dir)


@gpu(duration=_link_gpu_s)
def transcribe_youtube_video(url, modes, timestamps, long_form, language, reference, repeats, history,
                             progress=gr.Progress()):
    with _user_errors(), tempfile.TemporaryDirectory(prefix="arena-run-") as out_dir:
        options = _options(modes, timestamps, long_form, language)
        audio, title = _youtube_audio(url, progress)
        runs = _stream_run(title, "youtube", audio, options, reference, repeats, out_dir, progress)
        yield from _stream_page(runs, history, out_dir)


async def live_chunk(chunk, session: LiveSession | None, live_mode):
    """One streamed microphone chunk ((rate, int16 samples)): hand it to the session's own thread and
    show its latest update. It must return at once, so it runs on the event loop itself: the browser
    drops what it records while a chunk is on its way."""
    with _user_errors():
        if session is None:
            session = LiveSession(LiveTranscriber(_GpuModels(_require_arena()), live_mode or "student"))
        state = session.state if chunk is None else session.feed(chunk[1], chunk[0])
        return render.live_markdown(state), session


@gpu(duration=_live_gpu_s)
def live_stop(session: LiveSession | None, compare, modes, timestamps, long_form, language, reference, repeats,
              history, progress=gr.Progress()):
    """Flush the live text; then, if asked, run the chosen modes on the whole recording side by side."""
    with _user_errors(), tempfile.TemporaryDirectory(prefix="arena-live-") as out_dir:
        if session is None:
            raise _refusal("Nothing was recorded: allow the microphone, press Record and speak.")
        live_view = render.live_markdown(session.finish())
        if not compare:
            yield (live_view, None, *([gr.skip()] * PAGE_OUTPUTS))
            return
        options = _options(modes, timestamps, long_form, language)
        run = _stream_run("live recording", "microphone", session.recording(), options, reference, repeats, out_dir,
                          progress)
        for update in _stream_page(run, history, out_dir):
            yield (live_view, None, *update)


def show_youtube_embed(url):
    """Validate the link and show the video right away, before the (queued) download starts."""
    with _user_errors():
        link = parse_youtube_url(url)
    return render.youtube_embed(link.embed_url)


# ---- event handlers: API ----------------------------------------------------------------------


@gpu(duration=_file_gpu_s)
def transcribe_file(file, modes, timestamps, long_form, language, reference, repeats=1, progress=gr.Progress()):
    """Transcribe an audio or video file in each selected mode (student, teacher, speculative).

    Returns a JSON report (`runs[0].results`: one entry per mode with text, segments, every timing field,
    the speculative trace, word differences and WER; README "Web app and API") and the SRT/VTT/JSON
    subtitle files of the modes that have timestamps.
    """
    with _user_errors(), tempfile.TemporaryDirectory(prefix="arena-api-") as out_dir:
        options = _options(modes, timestamps, long_form, language)
        audio, clip = _file_audio(file, "Send an audio or video file.")
        run = _last(_stream_run(clip, "upload", audio, options, reference, repeats, out_dir, progress))
        # yield, not return: out_dir is removed only after Gradio has copied the files to its cache
        yield render.payload(run), _subtitle_files(run)


@gpu(duration=_link_gpu_s)
def transcribe_youtube(url, modes, timestamps, long_form, language, reference, repeats=1, progress=gr.Progress()):
    """Transcribe the audio of one YouTube video in each selected mode; same outputs as /transcribe_file."""
    with _user_errors(), tempfile.TemporaryDirectory(prefix="arena-api-") as out_dir:
        options = _options(modes, timestamps, long_form, language)
        audio, title = _youtube_audio(url, progress)
        run = _last(_stream_run(title, "youtube", audio, options, reference, repeats, out_dir, progress))
        yield render.payload(run), _subtitle_files(run)


# ---- shared steps -----------------------------------------------------------------------------


@contextmanager
def _user_errors():
    """Errors a user can fix become a readable message in the page (or an AppError in the client)."""
    try:
        yield
    except ArenaError as err:
        raise _refusal(str(err)) from err


def _refusal(message: str) -> gr.Error:
    """An error for the user to read; the console gets one log line instead of a traceback."""
    log.info("refused: %s", message)
    return gr.Error(html.escape(message), print_exception=False)  # Gradio renders the message as HTML


def _require_arena() -> Arena:
    if _arena is None:
        raise _refusal(f"The models are not loaded, so nothing can be transcribed. {_load_error or ''}".strip())
    return _arena


def _max_seconds() -> int:
    return max_seconds_on(_require_arena().info.device)


def _options(modes, timestamps, long_form, language) -> Options:
    chosen = tuple(mode for mode in MODES if mode in (modes or ()))
    if not chosen:
        raise _refusal("Tick at least one mode: student, teacher or speculative.")
    return Options(
        modes=chosen,
        timestamps=bool(timestamps),
        long_form=long_form or "chunked",
        language=None if language == "auto" else (language or "en"),
    )


def _file_audio(path, missing_message: str) -> tuple[np.ndarray, str]:
    if not path:
        raise _refusal(missing_message)
    return load_audio(path, max_seconds=_max_seconds()), Path(path).name


def _youtube_audio(url, progress) -> tuple[np.ndarray, str]:
    """Download into a private folder that is gone once the audio is in memory, on success or error."""
    limit = _max_seconds()
    progress(0, desc="Downloading the audio from YouTube…")
    with tempfile.TemporaryDirectory(prefix="arena-youtube-") as download_dir:
        video = fetch_audio(url, max_seconds=limit, out_dir=download_dir)
        return load_audio(video.path, max_seconds=limit), video.title


def _stream_run(
    clip: str, source: str, audio: np.ndarray, options: Options, reference, repeats, out_dir: str, progress
) -> Iterator[Run]:
    """Yield the run once before decoding and again after each mode, with that mode's subtitle files. With
    `repeats` > 1 the chosen modes run that many rounds, interleaved (every round runs them all)."""
    repeats = _repeats(repeats)
    run = Run(clip, source, _require_arena().info, duration_s(audio), options, reference or "", repeats)
    yield run

    for round_ in range(repeats):
        def report(fraction: float, message: str) -> None:
            progress((round_ + fraction) / repeats, desc=f"Transcribing: {message}")

        for result in _require_arena().iter_transcribe(audio, options, progress=report):
            run.add(result)
            if result.segments is not None and result.mode not in run.subtitles:
                files = write_subtitles(result, out_dir, Path(run.clip).stem)
                run.subtitles[result.mode] = [files[fmt] for fmt in SUBTITLE_FORMATS]
            yield run
    log.info(
        "%s (%.1f s, %s): %s", run.clip, run.audio_s, run.source,
        ", ".join(f"{m} {run.latency(m):.2f} s" for m in run.results),
    )


def _repeats(value) -> int:
    try:
        repeats = int(value or 1)
    except (TypeError, ValueError):
        repeats = 0
    if not 1 <= repeats <= MAX_REPEATS:
        raise _refusal(f"Repeats must be a whole number from 1 to {MAX_REPEATS}.")
    return repeats


def _last(runs: Iterator[Run]) -> Run:
    for run in runs:
        pass
    return run


def _subtitle_files(run: Run) -> list[str]:
    return [str(path) for mode in MODES for path in run.subtitles.get(mode, [])]


def _stream_page(runs: Iterator[Run], history: list[dict], out_dir: str) -> Iterator[tuple]:
    """Page updates per snapshot; the history grows and the export is written once, when every mode is done."""
    for run in runs:
        if run.finished:
            history = [*history, render.history_entry(run, len(history) + 1)]
            runs_chart = render.history_chart(history)
            chart = _chart(runs_chart, "RTFx", sort=list(dict.fromkeys(runs_chart["run"])))  # run order, not text order
            export = Path(out_dir) / f"{Path(run.clip).stem or 'run'}.run.json"
            export.write_text(json.dumps(render.payload(run), indent=1))
            yield (*_result_updates(run), gr.update(value=str(export), visible=True), render.history_table(history),
                   chart, history)
        else:
            yield (*_result_updates(run), gr.skip(), gr.skip(), gr.skip(), gr.skip())


def _result_updates(run: Run) -> tuple:
    updates = []
    for mode in MODES:
        result = run.results.get(mode)
        segments = render.segments_frame(result)
        files = [str(path) for path in run.subtitles.get(mode, [])]
        analysis = render.analysis_html(run, mode)
        updates += [
            result.text if result else "",
            render.metrics_markdown(run, mode),
            gr.update(value=analysis, visible=bool(analysis)),
            gr.update(value=segments, visible=segments is not None),
            gr.update(value=files or None, visible=bool(files)),
        ]
    return (*updates, render.run_status(run), _chart(render.latency_frame(run), "latency s"),
            _chart(render.timing_frame(run), "seconds", stacked=True),
            gr.update(value=render.spread_frame(run), visible=run.repeats > 1), render.payload(run))


def _chart(frame, y: str, stacked: bool = False, **props):
    """A chart update with headroom above the highest point (of a stack). Changing `colors_in_legend` makes
    Gradio rebuild the chart: without that, a mode (or part) first seen in an update stays invisible."""
    heights = (frame.groupby("mode")[y].sum() if stacked else frame[y]) if len(frame) else None
    top = float(heights.max()) * 1.15 if heights is not None else 1.0
    legend = "part" if stacked else "mode"
    return gr.update(value=frame, colors_in_legend=list(dict.fromkeys(frame[legend])), y_lim=[0, round(top, 2)],
                     **props)
