"""Distil-Whisper Arena web app: `python app.py [--port N] [--preset NAME]`, serves on 127.0.0.1:7860."""

import time

STARTED = time.perf_counter()  # cold start is measured from here to "ready"

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402

from ui import models  # noqa: E402 - first of the project imports: spaces must precede torch
from ui.gpu import ZERO_GPU  # noqa: E402
from ui.layout import AUDIO_DIR, CSS, JS, QUEUE_SIZE, THEME, build_demo  # noqa: E402
from ui.playback import PLAYBACK_DIR  # noqa: E402

from core.cli import quiet_libraries  # noqa: E402
from core.engine import Arena  # noqa: E402
from core.errors import ModelUnavailableError  # noqa: E402
from core.presets import PRESET_ENV, PRESETS  # noqa: E402

DEFAULT_PORT = 7860
MAX_UPLOAD = os.environ.get("ARENA_MAX_UPLOAD", "500mb")  # Gradio refuses bigger uploads before they reach us
log = logging.getLogger("app")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Distil-Whisper Arena: student, teacher and speculative decoding side by side")
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", DEFAULT_PORT)),
        help=f"default: GRADIO_SERVER_PORT, else {DEFAULT_PORT}",
    )
    parser.add_argument(
        "--preset", choices=sorted(PRESETS),
        help=f"teacher/student pair (default: {PRESET_ENV}, else large-v3 on a GPU and local on a CPU)",
    )
    return parser.parse_args(argv)


def load_arena(preset: str | None) -> tuple[Arena | None, str | None]:
    """The loaded models, or None and the reason, so the page can still explain what to fix."""
    try:
        return Arena.load(preset, warmup=False), None
    except ModelUnavailableError as err:
        log.error("models unavailable: %s", err)
        return None, str(err)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = parse_args(argv)
    quiet_libraries()
    arena, load_error = load_arena(args.preset)
    models.attach(arena, load_error)
    if arena is not None and not ZERO_GPU:  # on ZeroGPU a GPU exists only inside a request: the first one warms up
        models.warm_up()
    demo = build_demo(arena.info if arena else None, load_error)
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    PLAYBACK_DIR.mkdir(parents=True, exist_ok=True)  # Gradio serves it: the players of timed words read from it
    demo.launch(
        server_port=args.port, theme=THEME, css=CSS, js=JS, allowed_paths=[str(AUDIO_DIR), str(PLAYBACK_DIR)],
        max_file_size=MAX_UPLOAD,
        prevent_thread_lock=True,
    )
    log.info("ready at %s after a %.1f s cold start", demo.local_url, time.perf_counter() - STARTED)
    demo.block_thread()


if __name__ == "__main__":
    main()
