"""`spaces.GPU` on a Hugging Face ZeroGPU Space, a no-op decorator everywhere else.

Every function that runs a model is decorated with `gpu(duration)`: the page's and the API's handlers, the
warm-up, and each update of a live session (which decodes on a thread of its own, outside any handler).
ZeroGPU lends a GPU slice for the duration asked, and a short one is served first, so the duration is sized
from the audio: `duration` is seconds, or a function of the decorated function's arguments (ZeroGPU calls it
with them; `gpu_sized` hands them over by name). Imported before anything that imports torch: ZeroGPU must
patch CUDA first.
"""

import inspect
from collections.abc import Callable

try:
    import spaces
except ImportError:
    spaces = None

ZERO_GPU = bool(spaces is not None and getattr(getattr(spaces, "config", None), "Config", None)
                and getattr(spaces.config.Config, "zero_gpu", False))
GPU_BASE_S = 15  # features, VAD, caches: per request
GPU_S_PER_AUDIO_S = 0.03  # per mode and second of audio
GPU_MAX_S = 300
LIVE_UPDATE_S = 10  # one live update decodes at most 30 s of audio


def gpu(duration):
    if spaces is None:
        return lambda fn: fn
    return spaces.GPU(duration=duration)


def gpu_sized(seconds: Callable[[dict], int]):
    """`gpu` asking for `seconds(arguments)`: the call's arguments by parameter name."""
    def wrap(fn):
        signature = inspect.signature(fn)
        return gpu(duration=lambda *args, **kwargs: seconds(signature.bind(*args, **kwargs).arguments))(fn)
    return wrap


def seconds_for(audio_s: float | None, modes: int, repeats: int = 1) -> int:
    """What to ask ZeroGPU for: audio of unknown length gets the most."""
    if audio_s is None:
        return GPU_MAX_S
    return int(min(GPU_MAX_S, GPU_BASE_S + GPU_S_PER_AUDIO_S * audio_s * max(modes, 1) * max(repeats, 1)))
