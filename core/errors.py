"""Errors a user can cause or fix. Each carries a plain-language message fit to show as is."""


class ArenaError(Exception):
    """Base class: the UI shows `str(err)` to the user; anything else is a bug."""


class AudioError(ArenaError):
    """The input could not be turned into 16 kHz mono speech."""


class NotAudioError(AudioError):
    pass


class NoAudioStreamError(AudioError):
    pass


class EmptyAudioError(AudioError):
    pass


class AudioTooLongError(AudioError):
    pass


class DecodeTimeoutError(AudioError):
    pass


class ModelUnavailableError(ArenaError):
    """Weights for a preset cannot be loaded (not set up locally, or the hub is unreachable)."""


class LinkError(ArenaError):
    """A URL the user gave was refused or could not be fetched."""
