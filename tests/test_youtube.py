"""core.youtube: link validation, limits before download, error mapping, and yt-dlp's real
download path against a local HTTP server (no internet here)."""

import functools
import http.server
import os
import socket
import subprocess
import threading
import time
import wave

import pytest
import yt_dlp
from yt_dlp.networking.exceptions import TransportError
from yt_dlp.utils import DownloadError

from core import youtube
from core.errors import ArenaError, LinkError
from core.youtube import (
    DEFAULT_HOSTS, BotCheckError, DownloadTooLargeError, LiveStreamError, NotYouTubeError,
    OfflineError, PlaylistError, VideoTooLongError, VideoUnavailableError,
    download_audio, fetch_audio, parse_youtube_url, ydl_options,
)

JFK = os.path.join(os.path.dirname(__file__), "..", "assets", "audio", "jfk.wav")
VID = "jNQXAC9IVRw"
TEST_HOSTS = DEFAULT_HOSTS | {"127.0.0.1"}


# --- parsing -------------------------------------------------------------------------------

@pytest.mark.parametrize("url, video_id, start_s, kind", [
    (f"https://www.youtube.com/watch?v={VID}", VID, 0, "watch"),
    (f"http://youtube.com/watch?v={VID}", VID, 0, "watch"),
    (f"https://m.youtube.com/watch?v={VID}&feature=share", VID, 0, "watch"),
    (f"https://music.youtube.com/watch?v={VID}", VID, 0, "watch"),
    (f"https://www.youtube.com/watch?v={VID}&t=90", VID, 90, "watch"),
    (f"https://www.youtube.com/watch?v={VID}&t=90s", VID, 90, "watch"),
    (f"https://www.youtube.com/watch?v={VID}&t=1m30s", VID, 90, "watch"),
    (f"https://www.youtube.com/watch?v={VID}&t=1h0m5s", VID, 3605, "watch"),
    (f"https://www.youtube.com/watch?v={VID}&t=garbage", VID, 0, "watch"),
    (f"https://www.youtube.com/watch?v={VID}#t=42", VID, 42, "watch"),
    (f"https://www.youtube.com/watch?v={VID}&list=PLxyz&index=3", VID, 0, "watch"),
    (f"https://youtu.be/{VID}", VID, 0, "youtu.be"),
    (f"https://youtu.be/{VID}?t=1m30s", VID, 90, "youtu.be"),
    (f"https://youtu.be/{VID}?si=abc&list=PLxyz", VID, 0, "youtu.be"),
    (f"youtu.be/{VID}", VID, 0, "youtu.be"),
    (f"  https://www.youtube.com/shorts/{VID}  ", VID, 0, "short"),
    (f"https://www.youtube.com/embed/{VID}?start=12", VID, 12, "embed"),
    (f"https://www.youtube.com/live/{VID}?feature=share", VID, 0, "live"),
    (f"https://WWW.YouTube.com./watch?v={VID}", VID, 0, "watch"),
])
def test_accepted_links(url, video_id, start_s, kind):
    link = parse_youtube_url(url)
    assert (link.video_id, link.start_s, link.kind) == (video_id, start_s, kind)
    assert link.watch_url == f"https://www.youtube.com/watch?v={video_id}"
    assert link.embed_url == f"https://www.youtube.com/embed/{video_id}?start={start_s}"


NOT_YOUTUBE = "Only YouTube links"


@pytest.mark.parametrize("url, cls, words", [
    ("", LinkError, "Paste a YouTube link"),
    ("   ", LinkError, "Paste a YouTube link"),
    ("not a url", LinkError, "valid link"),
    ("https://", LinkError, NOT_YOUTUBE),
    (f"file:///etc/passwd?v={VID}", NotYouTubeError, NOT_YOUTUBE),
    ("data:text/html,<script>alert(1)</script>", LinkError, ""),
    ("javascript:alert(1)", NotYouTubeError, NOT_YOUTUBE),
    (f"ftp://youtube.com/watch?v={VID}", NotYouTubeError, NOT_YOUTUBE),
    (f"https://vimeo.com/watch?v={VID}", NotYouTubeError, NOT_YOUTUBE),
    (f"http://127.0.0.1/watch?v={VID}", NotYouTubeError, NOT_YOUTUBE),
    (f"http://localhost:8000/watch?v={VID}", NotYouTubeError, NOT_YOUTUBE),
    (f"http://[::1]/watch?v={VID}", NotYouTubeError, NOT_YOUTUBE),
    (f"http://10.0.0.1/watch?v={VID}", NotYouTubeError, NOT_YOUTUBE),
    (f"http://169.254.169.254/latest/meta-data?v={VID}", NotYouTubeError, NOT_YOUTUBE),
    (f"http://192.168.1.1/watch?v={VID}", NotYouTubeError, NOT_YOUTUBE),
    (f"http://2130706433/watch?v={VID}", NotYouTubeError, NOT_YOUTUBE),
    (f"https://youtube.com@127.0.0.1/watch?v={VID}", NotYouTubeError, "user name"),
    (f"https://user:pw@www.youtube.com/watch?v={VID}", NotYouTubeError, "user name"),
    (f"https://youtube.com\\@evil.com/watch?v={VID}", NotYouTubeError, ""),
    (f"https://youtube.com.evil.com/watch?v={VID}", NotYouTubeError, NOT_YOUTUBE),
    (f"https://evil.com/youtube.com/watch?v={VID}", NotYouTubeError, NOT_YOUTUBE),
    (f"https://notyoutube.com/watch?v={VID}", NotYouTubeError, NOT_YOUTUBE),
    (f"https://www.youtube.com:8080/watch?v={VID}", NotYouTubeError, NOT_YOUTUBE),
    (f"https://you\ntube.com/watch?v={VID}", LinkError, "control characters"),
    ("https://www.youtube.com/playlist?list=PL590L5WQmH8fJ54F369BLDSqIwcs-TCfs", PlaylistError, "Playlists are not supported"),
    ("https://www.youtube.com/watch?list=PL590L5WQmH8fJ54F369BLDSqIwcs-TCfs", PlaylistError, "one video"),
    ("https://www.youtube.com/embed/videoseries?list=PLxyz", PlaylistError, "Playlists"),
    ("https://www.youtube.com/@somechannel", LinkError, "channel"),
    ("https://www.youtube.com/", LinkError, "one YouTube video"),
    ("https://www.youtube.com/watch?v=short", LinkError, "video id"),
    (f"https://www.youtube.com/watch?v={VID}x", LinkError, "video id"),
    ("https://youtu.be/abc;rm -rf /", LinkError, ""),
    ("https://youtu.be/$(reboot)", LinkError, "video id"),
    ("https://youtu.be/`reboot`abc", LinkError, "video id"),
    ("https://www.youtube.com/watch?v=abc|reboot&x", LinkError, "video id"),
    (f"https://youtu.be/{VID}/extra", LinkError, "one YouTube video"),
    ("https://www.youtube.com/watch?v=" + "a" * 3000, LinkError, "too long"),
])
def test_refused_links(url, cls, words):
    with pytest.raises(cls) as info:
        parse_youtube_url(url)
    assert isinstance(info.value, ArenaError)
    assert words in str(info.value)
    assert "Traceback" not in str(info.value)


def test_allowed_hosts_is_an_exact_allowlist():
    assert parse_youtube_url(f"http://127.0.0.1/watch?v={VID}", allowed_hosts=TEST_HOSTS).video_id == VID
    with pytest.raises(NotYouTubeError):
        parse_youtube_url(f"https://youtu.be/{VID}", allowed_hosts={"www.youtube.com"})


def test_bad_link_never_reaches_yt_dlp(monkeypatch, tmp_path):
    def boom(*a, **k):
        raise AssertionError("yt-dlp must not be constructed for a refused link")
    monkeypatch.setattr(yt_dlp, "YoutubeDL", boom)
    with pytest.raises(NotYouTubeError):
        fetch_audio("http://169.254.169.254/latest", max_seconds=60, out_dir=str(tmp_path))


def test_cookies_from_env(monkeypatch, tmp_path):
    monkeypatch.delenv(youtube.COOKIES_ENV, raising=False)
    assert youtube.cookies_from_env() is None
    monkeypatch.setenv(youtube.COOKIES_ENV, str(tmp_path / "missing.txt"))
    assert youtube.cookies_from_env() is None
    jar = tmp_path / "cookies.txt"
    jar.write_text("# Netscape HTTP Cookie File\n")
    monkeypatch.setenv(youtube.COOKIES_ENV, str(jar))
    assert youtube.cookies_from_env() == str(jar)


def test_options_restrict_extractors_and_copy_cookies(tmp_path):
    jar = tmp_path / "mine.txt"
    jar.write_text("# Netscape HTTP Cookie File\n")
    out = tmp_path / "req"
    out.mkdir()
    opts = ydl_options(str(out), cookies_file=str(jar), socket_timeout=3, max_filesize=1000)
    assert opts["allowed_extractors"] == ["youtube"]
    assert opts["format"] == "bestaudio/best" and opts["noplaylist"] is True
    assert (opts["socket_timeout"], opts["max_filesize"]) == (3, 1000)
    assert opts["cookiefile"].startswith(str(out)) and opts["cookiefile"] != str(jar)
    with yt_dlp.YoutubeDL(opts) as ydl:  # the generic extractor must not be loaded
        names = {name.lower() for name in ydl._ies}
    assert names == {"youtube"}


# --- error mapping -------------------------------------------------------------------------

@pytest.mark.parametrize("text, cls", [
    ("ERROR: [youtube] x: Sign in to confirm you\u2019re not a bot. Use --cookies-from-browser or --cookies", BotCheckError),
    ("ERROR: [youtube] x: Sign in to confirm you're not a bot. This helps protect our community.", BotCheckError),
    ("ERROR: [youtube] x: Unable to download API page: HTTP Error 429: Too Many Requests", BotCheckError),
    ("ERROR: [youtube] x: Private video. Sign in if you've been granted access. Use --cookies", VideoUnavailableError),
    ("ERROR: [youtube] x: Video unavailable", VideoUnavailableError),
    ("ERROR: [youtube] x: Video unavailable. This video has been removed by the uploader", VideoUnavailableError),
    ("ERROR: [youtube] x: Join this channel to get access to members-only content like this video", VideoUnavailableError),
    ("ERROR: [youtube] x: Sign in to confirm your age. This video may be inappropriate for some users.", VideoUnavailableError),
    ("ERROR: [youtube] x: The uploader has not made this video available in your country", VideoUnavailableError),
    ("ERROR: [youtube] x: This live event will begin in 3 hours.", LiveStreamError),
    ("ERROR: [youtube] x: Unable to download webpage: <urlopen error [Errno -3] Temporary failure in name resolution>", OfflineError),
    ("ERROR: [youtube] x: Unable to download API page: Failed to resolve 'www.youtube.com'", OfflineError),
    ("ERROR: unable to download video data: Connection refused", OfflineError),
    ("ERROR: [youtube] x: Requested format is not available", LinkError),
    ("ERROR: something nobody anticipated", LinkError),
])
def test_download_errors_are_mapped(text, cls):
    err = youtube.map_download_error(DownloadError(text))
    assert type(err) is cls
    assert "ERROR" not in str(err) and "--cookies" not in str(err) and "[youtube]" not in str(err)


def test_bot_check_names_the_cookie_setting():
    err = youtube.map_download_error(DownloadError("ERROR: [youtube] x: Sign in to confirm you\u2019re not a bot"))
    assert "ARENA_YTDLP_COOKIES" in str(err) and "cookies.txt" in str(err)


def test_transport_error_cause_means_offline():
    cause = TransportError("[Errno 101] whatever")
    err = youtube.map_download_error(DownloadError("ERROR: odd wording", exc_info=(type(cause), cause, None)))
    assert isinstance(err, OfflineError)


def test_offline_fails_fast_and_quietly(tmp_path, capfd):
    try:
        socket.getaddrinfo("www.youtube.com", 443)
    except OSError:
        pass
    else:
        pytest.skip("this machine can resolve YouTube; the offline path cannot be exercised")
    start = time.monotonic()
    with pytest.raises(OfflineError) as info:
        fetch_audio(f"https://www.youtube.com/watch?v={VID}", max_seconds=600, out_dir=str(tmp_path), socket_timeout=3)
    assert time.monotonic() - start < 20
    assert str(info.value) == youtube.OFFLINE_HINT
    assert "ERROR" not in capfd.readouterr().err  # yt-dlp's own printing goes to logging


# --- the real yt-dlp download path, against a local server --------------------------------

@pytest.fixture(scope="module")
def media_server(tmp_path_factory):
    """Serves real compressed audio made from jfk.wav and records every request path."""
    root = tmp_path_factory.mktemp("media")
    for name, codec in (("audio.webm", ["-c:a", "libopus", "-b:a", "32k"]), ("audio.m4a", ["-c:a", "aac", "-b:a", "48k"])):
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", JFK, *codec, str(root / name)], check=True)
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()


def make_info(base, **overrides):
    """What YouTube's extractor hands back: an audio-only and a video-only format."""
    info = {
        "id": VID, "title": "Ask not", "duration": 11, "live_status": "not_live",
        "webpage_url": f"https://www.youtube.com/watch?v={VID}",
        "extractor": "youtube", "extractor_key": "Youtube",
        "formats": [
            {"format_id": "140", "url": f"{base}/audio.m4a", "ext": "m4a", "acodec": "mp4a.40.2", "vcodec": "none", "abr": 48},
            {"format_id": "251", "url": f"{base}/audio.webm", "ext": "webm", "acodec": "opus", "vcodec": "none", "abr": 32},
            {"format_id": "137", "url": f"{base}/video.mp4", "ext": "mp4", "acodec": "none", "vcodec": "avc1", "height": 1080},
        ],
    }
    info.update(overrides)
    return info


def run_download(tmp_path, info, *, max_seconds=60, max_filesize=youtube.MAX_FILESIZE, hosts=TEST_HOSTS):
    opts = ydl_options(str(tmp_path), socket_timeout=5, max_filesize=max_filesize)
    with yt_dlp.YoutubeDL(opts) as ydl:
        return download_audio(info, ydl, max_seconds=max_seconds, out_dir=str(tmp_path), allowed_hosts=hosts)


@pytest.mark.parametrize("keep", ["140", "251"])
def test_real_download_gives_16k_mono_wav(media_server, tmp_path, keep):
    base, requests = media_server
    requests.clear()
    info = make_info(base)
    info["formats"] = [f for f in info["formats"] if f["format_id"] in (keep, "137")]
    audio = run_download(tmp_path, info)
    with wave.open(audio.path, "rb") as f:
        assert (f.getframerate(), f.getnchannels(), f.getsampwidth()) == (16000, 1, 2)
        assert 10.5 < f.getnframes() / 16000 < 11.5
    assert os.path.dirname(audio.path) == str(tmp_path)
    assert (audio.video_id, audio.title, audio.duration_s) == (VID, "Ask not", 11.0)
    assert audio.webpage_url == f"https://www.youtube.com/watch?v={VID}"
    assert requests and all(not p.startswith("/video") for p in requests)  # audio only
    assert sorted(os.listdir(tmp_path)) == [os.path.basename(audio.path)]  # compressed file removed


def test_duration_cap_is_checked_before_downloading(media_server, tmp_path):
    base, requests = media_server
    requests.clear()
    with pytest.raises(VideoTooLongError) as info:
        run_download(tmp_path, make_info(base, duration=3600), max_seconds=600)
    assert "1:00:00" in str(info.value) and "10:00" in str(info.value)
    assert requests == []


def test_unknown_duration_is_capped_after_download(media_server, tmp_path):
    base, _ = media_server
    with pytest.raises(VideoTooLongError):
        run_download(tmp_path, make_info(base, duration=None), max_seconds=5)


@pytest.mark.parametrize("overrides", [{"live_status": "is_live"}, {"live_status": "is_upcoming"}, {"is_live": True}])
def test_live_streams_are_refused(media_server, tmp_path, overrides):
    base, requests = media_server
    requests.clear()
    with pytest.raises(LiveStreamError):
        run_download(tmp_path, make_info(base, duration=None, **overrides))
    assert requests == []


def test_playlists_are_refused(media_server, tmp_path):
    base, requests = media_server
    requests.clear()
    playlist = {"_type": "playlist", "id": "PLxyz", "webpage_url": "https://www.youtube.com/playlist?list=PLxyz",
                "entries": [make_info(base)]}
    with pytest.raises(PlaylistError):
        run_download(tmp_path, playlist)
    assert requests == []


def test_redirect_off_the_allowlist_is_refused(media_server, tmp_path):
    base, requests = media_server
    requests.clear()
    with pytest.raises(NotYouTubeError):
        run_download(tmp_path, make_info(base, webpage_url="https://evil.example/watch?v=x"))
    assert requests == []


def test_private_media_hosts_need_the_allowlist(media_server, tmp_path):
    base, requests = media_server
    requests.clear()
    with pytest.raises(LinkError, match="No downloadable audio"):
        run_download(tmp_path, make_info(base), hosts=DEFAULT_HOSTS)
    assert requests == []


def test_max_filesize_is_enforced(media_server, tmp_path):
    base, _ = media_server
    with pytest.raises(DownloadTooLargeError):
        run_download(tmp_path, make_info(base), max_filesize=1000)


def test_missing_media_maps_to_a_short_message(media_server, tmp_path):
    base, _ = media_server
    info = make_info(base)
    info["formats"] = [dict(info["formats"][1], url=f"{base}/gone.webm")]
    with pytest.raises(LinkError) as err:
        run_download(tmp_path, info)
    assert "HTTP" not in str(err.value) and "ERROR" not in str(err.value)
