"""Event handlers: get audio from an upload, the microphone or YouTube, run the selected modes,
and stream the page (or API) updates as each mode finishes."""

from ui.gpu import gpu  # noqa: I001 - must precede the torch import that core brings in

import html
import logging
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import gradio as gr
import numpy as np

from core.audio import duration_s, load_audio
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
PAGE_OUTPUTS = 4 * len(MODES) + 6  # what _stream_page yields per update (see ui.layout)

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


# ---- event handlers: page ---------------------------------------------------------------------
# Each yields, in order: 4 values per mode column (transcript, metrics, segments, subtitle files)
# for student, teacher, speculative; then run status, run chart, raw JSON, history table,
# history chart, history state. ui.layout lists the output components in the same order.


@gpu
def transcribe_upload(file, modes, timestamps, long_form, language, reference, history, progress=gr.Progress()):
    with _user_errors(), tempfile.TemporaryDirectory(prefix="arena-run-") as out_dir:
        options = _options(modes, timestamps, long_form, language)
        audio, clip = _file_audio(file, "Upload an audio or video file first.")
        yield from _stream_page(_stream_run(clip, "upload", audio, options, reference, out_dir, progress), history)


@gpu
def transcribe_microphone(recording, modes, timestamps, long_form, language, reference, history, progress=gr.Progress()):
    with _user_errors(), tempfile.TemporaryDirectory(prefix="arena-run-") as out_dir:
        options = _options(modes, timestamps, long_form, language)
        audio, _ = _file_audio(recording, "Record something first: press Record, speak, then Stop.")
        yield from _stream_page(_stream_run("microphone", "microphone", audio, options, reference, out_dir, progress), history)


@gpu
def transcribe_youtube_video(url, modes, timestamps, long_form, language, reference, history, progress=gr.Progress()):
    with _user_errors(), tempfile.TemporaryDirectory(prefix="arena-run-") as out_dir:
        options = _options(modes, timestamps, long_form, language)
        audio, title = _youtube_audio(url, progress)
        yield from _stream_page(_stream_run(title, "youtube", audio, options, reference, out_dir, progress), history)


async def live_chunk(chunk, session: LiveSession | None, live_mode):
    """One streamed microphone chunk ((rate, int16 samples)): hand it to the session's own thread and
    show its latest update. It must return at once, so it runs on the event loop itself: the browser
    drops what it records while a chunk is on its way."""
    with _user_errors():
        if session is None:
            session = LiveSession(LiveTranscriber(_require_arena(), live_mode or "student"))
        state = session.state if chunk is None else session.feed(chunk[1], chunk[0])
        return render.live_markdown(state), session


@gpu
def live_stop(session: LiveSession | None, compare, modes, timestamps, long_form, language, reference, history,
              progress=gr.Progress()):
    """Flush the live text; then, if asked, run the chosen modes on the whole recording side by side."""
    with _user_errors(), tempfile.TemporaryDirectory(prefix="arena-live-") as out_dir:
        if session is None:
            raise _refusal("Nothing was recorded: allow the microphone, press Record and speak.")
        live_view = render.live_markdown(session.finish())
        if not compare:
            yield (live_view, None, *([gr.skip()] * PAGE_OUTPUTS))
            return
        options = _options(modes, timestamps, long_form, language)
        run = _stream_run("live recording", "microphone", session.recording(), options, reference, out_dir, progress)
        for update in _stream_page(run, history):
            yield (live_view, None, *update)


def show_youtube_embed(url):
    """Validate the link and show the video right away, before the (queued) download starts."""
    with _user_errors():
        link = parse_youtube_url(url)
    return render.youtube_embed(link.embed_url)


# ---- event handlers: API ----------------------------------------------------------------------


@gpu
def transcribe_file(file, modes, timestamps, long_form, language, reference, progress=gr.Progress()):
    """Transcribe an audio or video file in each selected mode (student, teacher, speculative).

    Returns a JSON object (`results`: one entry per mode with text, segments and every timing field,
    plus `wer` when a reference is given and `identical_badge` for speculative) and the SRT/VTT/JSON
    subtitle files of the modes that have timestamps.
    """
    with _user_errors(), tempfile.TemporaryDirectory(prefix="arena-api-") as out_dir:
        options = _options(modes, timestamps, long_form, language)
        audio, clip = _file_audio(file, "Send an audio or video file.")
        run = _last(_stream_run(clip, "upload", audio, options, reference, out_dir, progress))
        # yield, not return: out_dir is removed only after Gradio has copied the files to its cache
        yield render.payload(run), _subtitle_files(run)


@gpu
def transcribe_youtube(url, modes, timestamps, long_form, language, reference, progress=gr.Progress()):
    """Transcribe the audio of one YouTube video in each selected mode; same outputs as /transcribe_file."""
    with _user_errors(), tempfile.TemporaryDirectory(prefix="arena-api-") as out_dir:
        options = _options(modes, timestamps, long_form, language)
        audio, title = _youtube_audio(url, progress)
        run = _last(_stream_run(title, "youtube", audio, options, reference, out_dir, progress))
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
    clip: str, source: str, audio: np.ndarray, options: Options, reference, out_dir: str, progress
) -> Iterator[Run]:
    """Yield the run once before decoding and again after each mode, with that mode's subtitle files."""
    run = Run(clip, source, _require_arena().info, duration_s(audio), options.modes, reference or "")
    yield run

    def report(fraction: float, message: str) -> None:
        progress(fraction, desc=f"Transcribing: {message}")

    for result in _require_arena().iter_transcribe(audio, options, progress=report):
        run.results[result.mode] = result
        if result.segments is not None:
            files = write_subtitles(result, out_dir, Path(run.clip).stem)
            run.subtitles[result.mode] = [files[fmt] for fmt in SUBTITLE_FORMATS]
        yield run
    log.info(
        "%s (%.1f s, %s): %s", run.clip, run.audio_s, run.source,
        ", ".join(f"{m} {r.latency_s:.2f} s" for m, r in run.results.items()),
    )


def _last(runs: Iterator[Run]) -> Run:
    for run in runs:
        pass
    return run


def _subtitle_files(run: Run) -> list[str]:
    return [str(path) for mode in MODES for path in run.subtitles.get(mode, [])]


def _stream_page(runs: Iterator[Run], history: list[dict]) -> Iterator[tuple]:
    """Page updates per snapshot; the history grows once, when every mode is done."""
    for run in runs:
        if run.finished:
            history = [*history, render.history_entry(run, len(history) + 1)]
            runs_chart = render.history_chart(history)
            chart = _chart(runs_chart, "RTFx", sort=list(dict.fromkeys(runs_chart["run"])))  # run order, not text order
            yield (*_result_updates(run), render.history_table(history), chart, history)
        else:
            yield (*_result_updates(run), gr.skip(), gr.skip(), gr.skip())


def _result_updates(run: Run) -> tuple:
    updates = []
    for mode in MODES:
        result = run.results.get(mode)
        segments = render.segments_frame(result)
        files = [str(path) for path in run.subtitles.get(mode, [])]
        updates += [
            result.text if result else "",
            render.metrics_markdown(run, mode),
            gr.update(value=segments, visible=segments is not None),
            gr.update(value=files or None, visible=bool(files)),
        ]
    return (*updates, render.run_status(run), _chart(render.latency_frame(run), "latency s"), render.payload(run))


def _chart(frame, y: str, **props):
    """A chart update with headroom above the highest point. Changing `colors_in_legend` makes Gradio
    rebuild the chart: without that, a mode first seen in an update stays invisible."""
    top = float(frame[y].max()) * 1.15 if len(frame) else 1.0
    return gr.update(value=frame, colors_in_legend=list(dict.fromkeys(frame["mode"])), y_lim=[0, round(top, 2)], **props)
