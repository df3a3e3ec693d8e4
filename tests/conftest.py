"""Shared fixtures. The hub is never reachable here: every test runs offline."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("ARENA_PRESET", "local")

import pytest

REPO = Path(__file__).resolve().parents[1]
AUDIO = REPO / "assets" / "audio"
ARTIFACTS = REPO / "tests" / "artifacts"
STAND_IN = REPO / "tests" / "stand_in"  # a stand-in `spaces` package (ZeroGPU)


def manifest() -> list[dict]:
    return [json.loads(line) for line in (AUDIO / "manifest.jsonl").read_text().splitlines() if line.strip()]


# Bundled clips joined with 0.5 s pauses: 35 s (two 30 s windows) and 67 s (three seeks) of real speech.
TWO_WINDOWS = ["jfk", "sense_and_sensibility_01_austen_64kb-0880", "asterisk_demo-echotest_8k", "goforward",
               "sense_and_sensibility_01_austen_64kb-0930"]
THREE_WINDOWS = [*TWO_WINDOWS, "jfk_white_snr10", "jfk_mp3"]


def joined_speech(parts: list[str]):
    """(16 kHz audio, the text it says) of the bundled clips `parts`, each followed by a 0.5 s pause."""
    import numpy as np

    from core.audio import SAMPLE_RATE, load_audio

    by_id = {c["id"]: c for c in manifest()}
    gap = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    audio = np.concatenate([x for p in parts for x in (load_audio(AUDIO / by_id[p]["file"]), gap)])
    return audio, " ".join(by_id[p]["text"] for p in parts)


@pytest.fixture(scope="session")
def arena():
    """The local preset (real converted whisper-base + local student), loaded and warmed up once."""
    from core.cli import quiet_libraries
    from core.engine import Arena

    quiet_libraries()
    return Arena.load("local")


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> Path:
    """The catalogue of real media files in tests/media.py."""
    from tests.media import build_media

    return build_media(tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="session")
def three_hours(tmp_path_factory) -> Path:
    from tests.media import three_hour_flac

    return three_hour_flac(tmp_path_factory.mktemp("long") / "three_hours.flac")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


# ---- the web app, served as `python app.py` ---------------------------------------------------

APP_START_TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class ServedApp:
    url: str
    pid: int


@contextmanager
def serve_app(args: list[str], log_path: Path, env: dict[str, str] | None = None):
    """Run `python app.py --port N *args` from the repo root until the block ends; yields a ServedApp."""
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    url = f"http://127.0.0.1:{port}/"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port), *args], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + APP_START_TIMEOUT_S
            while not _answers(url):
                if proc.poll() is not None:
                    pytest.fail(f"app.py exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"app.py did not answer within {APP_START_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")
                time.sleep(1)
            yield ServedApp(url, proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


# What the shared app is started with: its own temp folder (to check nothing is left behind there),
# an upload cap and a decode timeout small enough for tests to reach them quickly.
APP_MAX_UPLOAD_MB = 40
APP_DECODE_TIMEOUT_S = 4


@pytest.fixture(scope="session")
def app_tmpdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("app-tmp")


@pytest.fixture(scope="session")
def served_app(artifacts, app_tmpdir) -> ServedApp:
    """One app server (local preset) for the whole session, shared by the API and browser tests."""
    # with a stand-in for ZeroGPU's `spaces` package: every model call must run inside a GPU function
    # (tests/test_zerogpu.py reads its log)
    env = {"TMPDIR": str(app_tmpdir), "ARENA_MAX_UPLOAD": f"{APP_MAX_UPLOAD_MB}mb",
           "ARENA_DECODE_TIMEOUT_S": str(APP_DECODE_TIMEOUT_S), "PYTHONPATH": str(STAND_IN),
           "ARENA_SPACES_LOG": str(artifacts / "zerogpu.jsonl")}
    (artifacts / "zerogpu.jsonl").unlink(missing_ok=True)
    with serve_app([], artifacts / "app.log", env) as app:
        yield app


@pytest.fixture(scope="session")
def app_url(served_app) -> str:
    return served_app.url


@pytest.fixture()
def unloadable_app_url(artifacts, tmp_path) -> str:
    """The app started where the offline models are not set up (an empty models folder)."""
    env = {"ARENA_MODELS_DIR": str(tmp_path)}
    with serve_app(["--preset", "local"], artifacts / "app_unloadable.log", env) as app:
        yield app.url


@pytest.fixture(scope="session")
def youtube_unreachable() -> None:
    """For tests of the offline error: skipped where YouTube can be reached."""
    try:
        socket.create_connection(("www.youtube.com", 443), timeout=3).close()
    except OSError:
        return
    pytest.skip("YouTube is reachable from this machine")
