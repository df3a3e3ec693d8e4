"""The clip a run transcribed, as a file the page's player can fetch: its timed words follow that player.

Written only when word times are asked for, into a folder of Gradio's own cache (a file the app serves back,
like the subtitles; app.py lists it among Gradio's allowed paths, since Gradio serves only what it wrote
itself); files older than KEEP_S are deleted as new ones arrive, as Gradio clears its cache.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np
import soundfile as sf
from gradio.utils import get_upload_folder

from core.audio import SAMPLE_RATE

PLAYBACK_DIR = Path(get_upload_folder()) / "playback"
KEEP_S = 2 * 3600


def write_playback(audio: np.ndarray) -> str:
    """Save the 16 kHz audio as a WAV file; returns the URL the page plays it from."""
    PLAYBACK_DIR.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in PLAYBACK_DIR.glob("*.wav"):
        try:
            if now - old.stat().st_mtime > KEEP_S:
                old.unlink()
        except OSError:  # another request removed it first
            pass
    path = PLAYBACK_DIR / f"{uuid.uuid4().hex}.wav"
    sf.write(path, np.asarray(audio, dtype=np.float32), SAMPLE_RATE, subtype="PCM_16")
    return f"/gradio_api/file={path}"
