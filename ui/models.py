"""The loaded models as the handlers reach them, and the errors a user reads.

`attach` sets the arena once (or the reason it could not be loaded); `require_arena` hands it out or refuses;
`warm_up` and `LiveModels` (a live session's decoding, one GPU function per update) run it. `user_errors` and
`refusal` turn what a user can fix into a message in the page (or an AppError in the API client).
"""

from ui.gpu import LIVE_UPDATE_S, gpu  # noqa: I001 - must precede the torch import that core brings in

import html
import logging
from contextlib import contextmanager

import gradio as gr

from core.engine import Arena
from core.errors import ArenaError

MAX_SECONDS_CPU = 10 * 60
MAX_SECONDS_GPU = 60 * 60

log = logging.getLogger(__name__)

# Module-level so `spaces.GPU` functions never carry the models in their arguments.
_arena: Arena | None = None
_load_error: str | None = None


def attach(arena: Arena | None, load_error: str | None = None) -> None:
    """Give the handlers the loaded models, or the reason they could not be loaded."""
    global _arena, _load_error
    _arena, _load_error = arena, load_error


def require_arena() -> Arena:
    if _arena is None:
        raise refusal(f"The models are not loaded, so nothing can be transcribed. {_load_error or ''}".strip())
    return _arena


def max_seconds_on(device: str) -> int:
    """Longest clip accepted: transcribing an hour takes too long on a CPU."""
    return MAX_SECONDS_CPU if device == "CPU" else MAX_SECONDS_GPU


def max_seconds() -> int:
    return max_seconds_on(require_arena().info.device)


@gpu(duration=60)
def warm_up() -> None:
    """One short pass per mode so the first request doesn't pay for lazy set-up (on a GPU, in a GPU context)."""
    if _arena is not None:
        _arena.warmup()


class LiveModels:
    """The arena as a live session's own thread calls it: every update is a GPU function of its own."""

    def __init__(self, arena: Arena):
        self.multilingual = arena.multilingual

    def transcribe(self, audio, options):
        return _live_update(audio, options)

    def detect_language(self, audio):
        return _live_language(audio)


@gpu(duration=LIVE_UPDATE_S)
def _live_update(audio, options):
    return require_arena().transcribe(audio, options)


@gpu(duration=LIVE_UPDATE_S)
def _live_language(audio):
    return require_arena().detect_language(audio)


@contextmanager
def user_errors():
    """Errors a user can fix become a readable message in the page (or an AppError in the client)."""
    try:
        yield
    except ArenaError as err:
        raise refusal(str(err)) from err


def refusal(message: str) -> gr.Error:
    """An error for the user to read; the console gets one log line instead of a traceback."""
    log.info("refused: %s", message)
    return gr.Error(html.escape(message), print_exception=False)  # Gradio renders the message as HTML
