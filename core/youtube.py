"""Turn a pasted YouTube link into a 16 kHz mono wav, refusing anything that is not one video.

The user controls only the link. We validate it ourselves (scheme, exact host, 11-character
video id), rebuild a canonical watch URL from the id, and hand only that to yt-dlp with every
extractor but YouTube's switched off, so a link can never reach yt-dlp's generic extractor or
another site. Live streams, playlists and over-long videos are refused before any media byte is
downloaded. yt-dlp's error texts are mapped to short plain-language LinkErrors; details go to
`logging` only.

Media hosts: real YouTube media comes from *.googlevideo.com, whose URLs are produced by YouTube
itself, not by the user, so format URL host names are not allowlisted. As defence in depth a
format whose URL is not http(s), or whose host is an IP literal in a loopback/private/link-local/
reserved range, is dropped unless that exact host is in `allowed_hosts` (which is how tests serve
media from 127.0.0.1). Host names that merely resolve to private addresses are not checked.
"""

import ipaddress
import logging
import os
import re
import shutil
import subprocess
import wave
from dataclasses import dataclass
from typing import Iterable, Optional
from urllib.parse import SplitResult, parse_qs, urlsplit

import yt_dlp
from yt_dlp.cookies import CookieLoadError
from yt_dlp.networking.exceptions import IncompleteRead, TransportError
from yt_dlp.utils import YoutubeDLError

from core.errors import LinkError

logger = logging.getLogger(__name__)

DEFAULT_HOSTS = frozenset({
    "youtube.com",
    "www.youtube.com",
    "m.youtube.com",
    "music.youtube.com",
    "youtu.be",
})
COOKIES_ENV = "ARENA_YTDLP_COOKIES"
SAMPLE_RATE = 16000
SOCKET_TIMEOUT = 15  # seconds without a byte before yt-dlp gives up on a connection
MAX_FILESIZE = 200 * 1024 * 1024  # bytes of compressed audio; ~3 h of opus at 160 kbit/s
FFMPEG_TIMEOUT = 600  # seconds for the wav conversion
MAX_URL_LENGTH = 2048
ALLOWED_EXTRACTORS = ["youtube"]  # regexes, full-matched against IE names; no 'generic'
AUDIO_FORMAT = "bestaudio/best"
JS_RUNTIMES = {"deno": {}, "node": {}}  # YouTube's signature challenges need one; yt-dlp enables only deno by default

VIDEO_ID_RE = re.compile(r"^[A-Za-z0-9_-]{11}$")
TIMESTAMP_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?$")
PATH_ID_PREFIXES = {"shorts": "short", "embed": "embed", "live": "live", "v": "embed"}
OFFLINE_HINT = "Could not reach YouTube. Check the internet connection of the machine running the app."
COOKIES_HINT = f"set {COOKIES_ENV} to a cookies.txt file exported from a logged-in browser"


class NotYouTubeError(LinkError):
    pass


class PlaylistError(LinkError):
    pass


class VideoUnavailableError(LinkError):
    pass


class LiveStreamError(LinkError):
    pass


class VideoTooLongError(LinkError):
    pass


class DownloadTooLargeError(LinkError):
    pass


class BotCheckError(LinkError):
    pass


class OfflineError(LinkError):
    pass


@dataclass(frozen=True)
class YouTubeLink:
    video_id: str
    start_s: int = 0
    kind: str = "watch"  # watch | short | embed | live | youtu.be; "live" is checked at fetch time

    @property
    def watch_url(self) -> str:
        return f"https://www.youtube.com/watch?v={self.video_id}"

    @property
    def embed_url(self) -> str:
        return f"https://www.youtube.com/embed/{self.video_id}?start={self.start_s}"


@dataclass(frozen=True)
class DownloadedAudio:
    path: str  # 16 kHz mono 16-bit PCM wav inside the caller's out_dir
    title: str
    duration_s: float
    video_id: str
    webpage_url: str


def cookies_from_env() -> Optional[str]:
    """Cookies help when YouTube demands a sign-in; the admin opts in via ARENA_YTDLP_COOKIES."""
    path = os.environ.get(COOKIES_ENV, "").strip()
    if not path:
        return None
    if not os.path.isfile(path):
        logger.warning("%s=%r is not a file; ignoring it", COOKIES_ENV, path)
        return None
    return path


def parse_timestamp(value: str) -> int:
    """YouTube's t= accepts 90, 90s, 1m30s, 1h2m3s; anything else means 'from the start'."""
    value = value.strip().lower()
    match = TIMESTAMP_RE.match(value)
    if not value or not match:
        return 0
    h, m, s = (int(g) if g else 0 for g in match.groups())
    return h * 3600 + m * 60 + s


def _host_is_allowed(host: Optional[str], allowed_hosts: Iterable[str]) -> bool:
    if not host:
        return False
    host = host.lower().rstrip(".")
    return host in {h.lower() for h in allowed_hosts}


def parse_youtube_url(url: str, allowed_hosts: Iterable[str] = DEFAULT_HOSTS) -> YouTubeLink:
    """Validate a pasted link and extract one video id; everything else is refused, never guessed."""
    parts, host = _split_allowed(_cleaned(url), allowed_hosts)
    query = parse_qs(parts.query)
    start_s = _start_seconds(query, parse_qs(parts.fragment))
    segments = [s for s in parts.path.split("/") if s]
    video_id, kind = _video_id(host, segments, query)
    if video_id is None:
        if "list" in query or segments[:1] == ["playlist"]:
            raise PlaylistError("Playlists are not supported; paste a link to one video.")
        raise LinkError("This link is not a link to one YouTube video (channel, search and home pages are not supported).")
    if not VIDEO_ID_RE.match(video_id):
        raise LinkError("This link does not contain a valid YouTube video id.")
    return YouTubeLink(video_id=video_id, start_s=start_s, kind=kind)


def _cleaned(url: str) -> str:
    """The pasted text as a URL with a scheme, or LinkError for what cannot be a link at all."""
    if not isinstance(url, str) or not url.strip():
        raise LinkError("Paste a YouTube link first.")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise LinkError("This link is too long to be a YouTube video link.")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        # urlsplit silently drops tabs/newlines, so "you\ntube.com" must not get that far
        raise LinkError("This doesn't look like a valid link (it contains spaces or control characters).")
    if "://" not in url and re.match(r"^[A-Za-z0-9.-]+(?::\d+)?(?:[/?#]|$)", url):
        url = "https://" + url  # people paste "youtu.be/ID" without a scheme
    return url


def _split_allowed(url: str, allowed_hosts: Iterable[str]) -> tuple[SplitResult, str]:
    """The URL's parts and its host, once scheme, credentials, port and host are all YouTube's."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise LinkError("This doesn't look like a valid link.") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise NotYouTubeError("Only YouTube links (https://www.youtube.com/... or https://youtu.be/...) are accepted.")
    if "@" in parts.netloc:
        raise NotYouTubeError("Links with a user name or password in them are not accepted.")
    if port not in (None, 80, 443):
        raise NotYouTubeError("Only YouTube links are accepted (youtube.com or youtu.be).")
    host = (parts.hostname or "").lower().rstrip(".")
    if not _host_is_allowed(host, allowed_hosts):
        raise NotYouTubeError("Only YouTube links are accepted (youtube.com or youtu.be).")
    return parts, host


def _start_seconds(query: dict, fragment: dict) -> int:
    """The first t= or start= in the query, else in the fragment (0: from the start)."""
    for source in (query, fragment):
        for key in ("t", "start"):
            if source.get(key):
                start_s = parse_timestamp(source[key][0])
                if start_s:
                    return start_s
                break
    return 0


def _video_id(host: str, segments: list[str], query: dict) -> tuple[str | None, str]:
    """The video id the path (or ?v=) names, and the link's kind; None when it names no single video."""
    if host == "youtu.be":
        return (segments[0], "youtu.be") if len(segments) == 1 else (None, "watch")
    if segments == ["watch"]:
        return (query.get("v") or [None])[0], "watch"
    if len(segments) == 2 and segments[0] in PATH_ID_PREFIXES:
        video_id = segments[1]
        return (None if video_id == "videoseries" else video_id), PATH_ID_PREFIXES[segments[0]]
    return None, "watch"


class _YdlLogger:
    """yt-dlp prints errors to stderr even with quiet=True unless given a logger."""

    def debug(self, msg):
        logger.debug("yt-dlp: %s", msg)

    def info(self, msg):
        logger.debug("yt-dlp: %s", msg)

    def warning(self, msg):
        logger.info("yt-dlp warning: %s", msg)

    def error(self, msg):
        logger.warning("yt-dlp error: %s", msg)


def ydl_options(out_dir: str, *, cookies_file: Optional[str] = None, socket_timeout: float = SOCKET_TIMEOUT,
                max_filesize: Optional[int] = MAX_FILESIZE) -> dict:
    """Options for one request: audio only, one video, YouTube extractor only, files inside out_dir."""
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    opts = {
        "format": AUDIO_FORMAT,
        "noplaylist": True,
        "allowed_extractors": list(ALLOWED_EXTRACTORS),
        "socket_timeout": socket_timeout,
        "max_filesize": max_filesize,
        "outtmpl": {"default": os.path.join(out_dir, "%(id)s.%(ext)s")},
        "paths": {"home": out_dir, "temp": out_dir},
        "restrictfilenames": True,
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": _YdlLogger(),
        "fixup": "never",  # we re-encode with ffmpeg anyway
        "retries": 2,
        "extractor_retries": 1,
        "js_runtimes": {k: dict(v) for k, v in JS_RUNTIMES.items()},
    }
    if cookies_file:
        # yt-dlp writes the jar back to `cookiefile` on close; give it a private copy
        copy = os.path.join(out_dir, "cookies.txt")
        shutil.copyfile(cookies_file, copy)
        os.chmod(copy, 0o600)
        opts["cookiefile"] = copy
    return opts


def _error_texts(err: BaseException) -> str:
    """yt-dlp nests the real cause (e.g. a TransportError) inside DownloadError.exc_info."""
    texts, seen, todo = [], set(), [err]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        texts.append(str(e))
        exc_info = getattr(e, "exc_info", None)
        if isinstance(exc_info, tuple) and len(exc_info) > 1:
            todo.append(exc_info[1])
        todo.extend([getattr(e, "cause", None), e.__cause__, e.__context__])
    return "\n".join(texts)


def _has_cause(err: BaseException, predicate) -> bool:
    seen, todo = set(), [err]
    while todo:
        e = todo.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        if predicate(e):
            return True
        exc_info = getattr(e, "exc_info", None)
        if isinstance(exc_info, tuple) and len(exc_info) > 1:
            todo.append(exc_info[1])
        todo.extend([getattr(e, "cause", None), e.__cause__, e.__context__])
    return False


# (lower-case substrings, error class, message); first match wins, so order matters
ERROR_TABLE = [
    (("not a bot",),
     BotCheckError, f"YouTube asked this server to sign in to prove it is not a bot. An administrator can {COOKIES_HINT}."),
    (("http error 429", "too many requests"),
     BotCheckError, f"YouTube is rate-limiting this server. Try again later, or an administrator can {COOKIES_HINT}."),
    (("live event will begin", "premieres in", "premiere will begin", "this live event"),
     LiveStreamError, "This is an upcoming live stream or premiere; try again after it has ended."),
    (("private video", "video is private"),
     VideoUnavailableError, "This video is private."),
    (("members-only", "members only", "join this channel"),
     VideoUnavailableError, "This video is only available to channel members."),
    (("confirm your age", "age-restricted", "age restricted", "inappropriate for some users"),
     VideoUnavailableError, f"This video is age-restricted and cannot be fetched without signing in (an administrator can {COOKIES_HINT})."),
    (("not available in your country", "not made this video available in your country", "geo restrict"),
     VideoUnavailableError, "This video is not available in the country of the machine running the app."),
    (("video unavailable", "video is unavailable", "has been removed", "no longer available",
      "account associated with this video has been terminated", "copyright", "does not exist"),
     VideoUnavailableError, "This video is unavailable (it may have been removed)."),
    (("unable to download webpage", "unable to download api page", "failed to resolve",
      "name or service not known", "temporary failure in name resolution", "nodename nor servname",
      "getaddrinfo failed", "connection refused", "network is unreachable", "no route to host",
      "urlopen error", "timed out", "connection reset"),
     OfflineError, OFFLINE_HINT),
    (("requested format is not available", "no video formats found"),
     LinkError, "No downloadable audio track was found for this video."),
    (("unsupported url", "no suitable extractor"),
     NotYouTubeError, "Only YouTube links are accepted (youtube.com or youtu.be)."),
]


def map_download_error(err: BaseException) -> LinkError:
    """Turn a yt-dlp failure into a short message a user can act on; the raw text goes to the log."""
    if isinstance(err, LinkError):
        return err
    text = _error_texts(err)
    if _has_cause(err, lambda e: isinstance(e, CookieLoadError)):
        logger.warning("cookies could not be loaded: %s", text)
        return LinkError(f"The cookies file could not be used. Check the file that {COOKIES_ENV} points to.")
    logger.warning("YouTube fetch failed: %s", text)
    lowered = text.lower().replace("\u2019", "'")
    for needles, cls, message in ERROR_TABLE:
        if any(n in lowered for n in needles):
            return cls(message)
    if _has_cause(err, lambda e: isinstance(e, TransportError) and not isinstance(e, IncompleteRead)):
        return OfflineError(OFFLINE_HINT)
    return LinkError("Could not get the audio of this YouTube video. Try again later or try another link.")


def extract_info(link: YouTubeLink, ydl) -> dict:
    """Metadata only (no media, no format processing) so limits can be checked before downloading."""
    try:
        info = ydl.extract_info(link.watch_url, download=False, process=False)
    except YoutubeDLError as err:
        raise map_download_error(err) from err
    if not info:
        raise LinkError("YouTube returned no information for this link.")
    return info


def _format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def check_info(info: dict, *, max_seconds: float, allowed_hosts: Iterable[str] = DEFAULT_HOSTS) -> None:
    """Refuse playlists, redirects off the allowlist, live streams and long videos before downloading."""
    kind = info.get("_type", "video")
    if kind in ("playlist", "multi_video"):
        raise PlaylistError("Playlists are not supported; paste a link to one video.")
    if kind != "video":
        logger.warning("yt-dlp returned _type=%r for %r", kind, info.get("webpage_url"))
        raise LinkError("This link does not lead to a single YouTube video.")
    webpage_url = info.get("webpage_url") or ""
    if not _host_is_allowed(urlsplit(webpage_url).hostname, allowed_hosts):
        logger.warning("refusing redirect to %r", webpage_url)
        raise NotYouTubeError("This link leads away from YouTube; it was not followed.")
    if info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming"):
        raise LiveStreamError("Live streams and upcoming premieres cannot be transcribed; try again after it has ended.")
    duration = info.get("duration")
    if duration is not None and duration > max_seconds:
        raise VideoTooLongError(
            f"This video is {_format_duration(duration)} long; the limit is {_format_duration(max_seconds)}.")


def _media_url_ok(url: Optional[str], allowed_hosts: Iterable[str]) -> bool:
    """Defence in depth: never let a format point at loopback/private/link-local IP literals."""
    if not url:
        return True
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return False
    host = (parts.hostname or "").lower()
    if _host_is_allowed(host, allowed_hosts):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return bool(host) and host != "localhost" and not host.endswith(".localhost")
    return ip.is_global


def _safe_formats(info: dict, allowed_hosts: Iterable[str]) -> dict:
    keys = ("url", "manifest_url", "fragment_base_url")
    formats = [f for f in info.get("formats") or []
               if all(_media_url_ok(f.get(k), allowed_hosts) for k in keys)]
    dropped = len(info.get("formats") or []) - len(formats)
    if dropped:
        logger.warning("dropped %d format(s) with refused media URLs", dropped)
    info = dict(info, formats=formats)
    if not all(_media_url_ok(info.get(k), allowed_hosts) for k in keys):
        info.pop("url", None)
    if not formats and not info.get("url"):
        raise LinkError("No downloadable audio track was found for this video.")
    return info


def _downloaded_path(result: Optional[dict]) -> Optional[str]:
    if not result:
        return None
    for entry in result.get("requested_downloads") or []:
        if entry.get("filepath") and os.path.isfile(entry["filepath"]):
            return entry["filepath"]
    path = result.get("filepath")
    return path if path and os.path.isfile(path) else None


def to_wav(src: str, dst: str, *, max_seconds: Optional[float] = None) -> None:
    """Decode anything ffmpeg reads to 16 kHz mono s16 wav; argument list, never a shell."""
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
           "-i", os.path.abspath(src), "-vn", "-sn", "-dn",
           "-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le"]
    if max_seconds is not None:
        cmd += ["-t", f"{max_seconds + 1:.3f}"]  # a cap when the duration was unknown up front
    cmd += ["-f", "wav", os.path.abspath(dst)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=FFMPEG_TIMEOUT)
    except FileNotFoundError:
        raise LinkError("ffmpeg is not installed on the machine running the app.") from None
    except subprocess.TimeoutExpired:
        raise LinkError("Converting the downloaded audio took too long.") from None
    if proc.returncode != 0:
        logger.warning("ffmpeg failed (%d): %s", proc.returncode, proc.stderr.decode(errors="replace")[-2000:])
        raise LinkError("The downloaded audio could not be decoded.")


def _wav_seconds(path: str) -> float:
    with wave.open(path, "rb") as f:
        return f.getnframes() / f.getframerate()


def download_audio(info: dict, ydl, *, max_seconds: float, out_dir: str,
                   allowed_hosts: Iterable[str] = DEFAULT_HOSTS) -> DownloadedAudio:
    """Check limits, download best audio via yt-dlp's real pipeline, convert to 16 kHz mono wav."""
    check_info(info, max_seconds=max_seconds, allowed_hosts=allowed_hosts)
    info = _safe_formats(info, allowed_hosts)
    try:
        result = ydl.process_ie_result(info, download=True)
    except YoutubeDLError as err:
        raise map_download_error(err) from err
    src = _downloaded_path(result)
    if src is None:
        # yt-dlp skips (without raising) a file larger than max_filesize
        limit = ydl.params.get("max_filesize")
        size = f" (the limit is {limit // (1024 * 1024)} MB)" if limit else ""
        raise DownloadTooLargeError(f"The audio of this video is too large to download{size}.")

    video_id = str(result.get("id") or info.get("id"))
    dst = os.path.join(os.path.abspath(out_dir), f"{video_id}.{SAMPLE_RATE // 1000}k.wav")
    try:
        to_wav(src, dst, max_seconds=max_seconds)
    finally:
        if os.path.abspath(src) != os.path.abspath(dst):
            os.remove(src)
    seconds = _wav_seconds(dst)
    if seconds > max_seconds + 0.5:
        os.remove(dst)
        raise VideoTooLongError(f"This video is longer than the limit of {_format_duration(max_seconds)}.")
    return DownloadedAudio(
        path=dst,
        title=str(result.get("title") or info.get("title") or video_id),
        duration_s=float(info.get("duration") or seconds),
        video_id=video_id,
        webpage_url=result.get("webpage_url") or info.get("webpage_url"),
    )


def fetch_audio(url: str, *, max_seconds: float, out_dir: str, cookies_file: Optional[str] = None,
                allowed_hosts: Iterable[str] = DEFAULT_HOSTS, socket_timeout: float = SOCKET_TIMEOUT,
                max_filesize: Optional[int] = MAX_FILESIZE) -> DownloadedAudio:
    """Validate a pasted link and return its audio as a 16 kHz mono wav inside out_dir.

    cookies_file=None falls back to cookies_from_env(), so ARENA_YTDLP_COOKIES works everywhere.
    """
    link = parse_youtube_url(url, allowed_hosts)
    opts = ydl_options(out_dir, cookies_file=cookies_file or cookies_from_env(),
                       socket_timeout=socket_timeout, max_filesize=max_filesize)
    try:
        with yt_dlp.YoutubeDL(opts) as ydl:
            info = extract_info(link, ydl)
            return download_audio(info, ydl, max_seconds=max_seconds, out_dir=out_dir, allowed_hosts=allowed_hosts)
    except LinkError:
        raise
    except YoutubeDLError as err:  # e.g. a cookie-jar failure while closing
        raise map_download_error(err) from err
