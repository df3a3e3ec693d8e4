"""Event handlers, apart from the layout (ui.layout registers them).

Page: `transcribe_upload`, `transcribe_microphone`, `transcribe_youtube_video` and `live_stop` yield
`Snapshot`s (ui.view shows them); `live_chunk` and `show_youtube_embed` answer at once. API:
`transcribe_file` and `transcribe_youtube` return the JSON report and the subtitle files. Each transcribing
handler is a GPU function (sized by `_gpu_seconds`) in front of one body: `_page` or `_api`.
"""

from ui.gpu import LIVE_UPDATE_S, gpu_sized, seconds_for  # noqa: I001 - must precede the torch import that core brings in

import json
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import gradio as gr

from core.audio import probe
from core.errors import ArenaError
from core.modes import MODES
from core.streaming import LiveSession, LiveTranscriber
from core.youtube import parse_youtube_url
from ui import render
from ui.models import LiveModels, refusal, require_arena, user_errors
from ui.request import Form, Source, parse_repeats, stream_run
from ui.run import Snapshot


def _gpu_seconds(call: dict) -> int:
    """GPU time for a transcribing handler, from its arguments by name: the audio's length (a file's from its
    header; a link's is known only after downloading), the modes and the repeats."""
    modes = len(call.get("modes") or MODES)
    repeats = parse_repeats(call.get("repeats")) or 1
    if "session" in call:  # live: what was heard, the modes if compared, and the last live update
        heard = call["session"].state.audio_s if call["session"] is not None else 0.0
        return seconds_for(heard, modes if call["compare"] else 0, repeats) + LIVE_UPDATE_S
    if "url" in call:
        return seconds_for(None, modes, repeats)
    file = call.get("file") or call.get("recording")
    try:
        audio_s = probe(file).duration_s if file else None
    except ArenaError:
        audio_s = 0.0  # refused before any model runs
    return seconds_for(audio_s, modes, repeats)


# ---- page -------------------------------------------------------------------------------------


@gpu_sized(_gpu_seconds)
def transcribe_upload(file, modes, timestamps, long_form, language, reference, repeats, word_timestamps, precision, history,
                      progress=gr.Progress()):
    source = Source("upload", file=file, missing="Upload an audio or video file first.")
    yield from _page(source, Form(modes, timestamps, long_form, language, reference, repeats, word_timestamps, precision),
                     history, progress)


@gpu_sized(_gpu_seconds)
def transcribe_microphone(recording, modes, timestamps, long_form, language, reference, repeats, word_timestamps, precision, history,
                          progress=gr.Progress()):
    source = Source("microphone", file=recording, clip="microphone",
                    missing="Record something first: press Record, speak, then Stop.")
    yield from _page(source, Form(modes, timestamps, long_form, language, reference, repeats, word_timestamps, precision),
                     history, progress)


@gpu_sized(_gpu_seconds)
def transcribe_youtube_video(url, modes, timestamps, long_form, language, reference, repeats, word_timestamps, precision, history,
                             progress=gr.Progress()):
    source = Source("youtube", url=url)
    yield from _page(source, Form(modes, timestamps, long_form, language, reference, repeats, word_timestamps, precision),
                     history, progress)


async def live_chunk(chunk, session: LiveSession | None, live_mode):
    """One streamed microphone chunk ((rate, int16 samples)): hand it to the session's own thread and
    show its latest update. It must return at once, so it runs on the event loop itself: the browser
    drops what it records while a chunk is on its way."""
    with user_errors():
        if session is None:
            session = LiveSession(LiveTranscriber(LiveModels(require_arena()), live_mode or "student"))
        state = session.state if chunk is None else session.feed(chunk[1], chunk[0])
        return render.live_markdown(state), session


@gpu_sized(_gpu_seconds)
def live_stop(session: LiveSession | None, compare, modes, timestamps, long_form, language, reference, repeats,
              word_timestamps, precision, history, progress=gr.Progress()):
    """Flush the live text; then, if asked, run the chosen modes on the whole recording side by side."""
    with user_errors():
        if session is None:
            raise refusal("Nothing was recorded: allow the microphone, press Record and speak.")
        live = render.live_markdown(session.finish())
    if not compare:
        yield Snapshot(live=live)
        return
    source = Source("microphone", samples=session.recording(), clip="live recording")
    for snapshot in _page(source, Form(modes, timestamps, long_form, language, reference, repeats, word_timestamps, precision), history,
                          progress):
        yield replace(snapshot, live=live)


def show_youtube_embed(url):
    """Validate the link and show the video right away, before the (queued) download starts."""
    with user_errors():
        link = parse_youtube_url(url)
    return render.youtube_embed(link.embed_url)


# ---- API --------------------------------------------------------------------------------------


@gpu_sized(_gpu_seconds)
def transcribe_file(file, modes, timestamps, long_form, language, reference, repeats=1, word_timestamps=False,
                    precision=None, progress=gr.Progress()):
    """Transcribe an audio or video file in each selected mode (student, teacher, speculative).

    `word_timestamps`: each segment also lists its words with start, end and probability (implies timestamps).
    `precision`: the decoders' precision, one of the header's list (e.g. "fp32" or "int8" on a CPU); every
    mode runs in it (default: the device's).
    Returns a JSON report (`runs[0].results`: one entry per mode with text, segments, every timing field,
    the speculative trace, word differences and WER; README "Web app and API") and the SRT/VTT/JSON
    subtitle files of the modes that have timestamps.
    """
    source = Source("upload", file=file, missing="Send an audio or video file.")
    yield from _api(source, Form(modes, timestamps, long_form, language, reference, repeats, word_timestamps, precision), progress)


@gpu_sized(_gpu_seconds)
def transcribe_youtube(url, modes, timestamps, long_form, language, reference, repeats=1, word_timestamps=False,
                       precision=None, progress=gr.Progress()):
    """Transcribe the audio of one YouTube video in each selected mode; same outputs as /transcribe_file."""
    yield from _api(Source("youtube", url=url), Form(modes, timestamps, long_form, language, reference, repeats, word_timestamps, precision),
                    progress)


# ---- the two bodies ---------------------------------------------------------------------------


def _page(source: Source, form: Form, history: list[dict], progress) -> Iterator[Snapshot]:
    """A snapshot per mode; once every mode is done, the history grows and the export is written."""
    with user_errors(), tempfile.TemporaryDirectory(prefix="arena-run-") as out_dir:
        for run in stream_run(source, form, out_dir, progress):
            if not run.finished:
                yield Snapshot(run)
                continue
            history = [*history, render.history_entry(run, len(history) + 1)]
            export = Path(out_dir) / f"{Path(run.clip).stem or 'run'}.run.json"
            export.write_text(json.dumps(render.payload(run), indent=1))
            yield Snapshot(run, history, str(export))


def _api(source: Source, form: Form, progress) -> Iterator[tuple[dict, list[str]]]:
    with user_errors(), tempfile.TemporaryDirectory(prefix="arena-api-") as out_dir:
        for run in stream_run(source, form, out_dir, progress, page=False):
            pass
        # yield, not return: out_dir is removed only after Gradio has copied the files to its cache
        yield render.payload(run), [str(path) for mode in MODES for path in run.subtitles.get(mode, [])]
