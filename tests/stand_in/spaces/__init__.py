"""A stand-in for Hugging Face's `spaces` package (ZeroGPU), for tests: `GPU(duration=...)` runs the function
inside a "GPU context" of the calling thread and logs the call and the duration it would ask for; any Whisper
module that runs outside such a context is logged as a violation. The log is JSON lines at $ARENA_SPACES_LOG."""

import functools
import inspect
import json
import os
import threading

_context = threading.local()
_lock = threading.Lock()


class config:  # noqa: N801 - the real package's spelling
    class Config:
        zero_gpu = True


def _log(entry: dict) -> None:
    path = os.environ.get("ARENA_SPACES_LOG")
    if path:
        with _lock, open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")


def _check(module, _args):
    if type(module).__name__.startswith("Whisper") and not getattr(_context, "depth", 0):
        _log({"violation": type(module).__name__, "thread": threading.current_thread().name})


def _install_hook():
    import torch

    torch.nn.modules.module.register_module_forward_pre_hook(_check)


class _inside:
    def __enter__(self):
        _context.depth = getattr(_context, "depth", 0) + 1

    def __exit__(self, *_):
        _context.depth -= 1


def GPU(fn=None, duration=60):  # noqa: N802 - the real package's spelling
    def wrap(fn):
        def asked(args, kwargs):
            seconds = duration(*args, **kwargs) if callable(duration) else duration
            _log({"gpu": fn.__name__, "duration": seconds, "thread": threading.current_thread().name})

        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def stepped(*args, **kwargs):
                asked(args, kwargs)
                steps = fn(*args, **kwargs)
                try:
                    while True:  # each step may run on another thread (Gradio iterates from a pool)
                        with _inside():
                            try:
                                item = next(steps)
                            except StopIteration:
                                return
                        yield item
                finally:
                    with _inside():
                        steps.close()
            return stepped

        @functools.wraps(fn)
        def called(*args, **kwargs):
            asked(args, kwargs)
            with _inside():
                return fn(*args, **kwargs)
        return called

    return wrap(fn) if callable(fn) else wrap


_install_hook()
