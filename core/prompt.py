"""What the decoder is given before it hears anything: Whisper's prompt, and a forced prefix.

Every mode of a request gets the same prompt and prefix from here, so their tokens can be compared one
for one (speculative decoding must give exactly the teacher's).
"""

from __future__ import annotations

from typing import Callable


def prompt(config, multilingual: bool, language: str | None) -> Callable[[bool], tuple[int, ...]]:
    """The decoder prompt generate() would build from a generation config: start, language and task (a
    multilingual model only), and no-timestamps when timestamps are off. A function of `timestamps`,
    because a window over 30 s decodes with timestamps whatever was asked (seeking needs them)."""
    head = [config.decoder_start_token_id]
    if multilingual:
        head += [config.lang_to_id[f"<|{language or 'en'}|>"], config.task_to_id["transcribe"]]
    return lambda timestamps: tuple(head if timestamps else head + [config.no_timestamps_token_id])


def prefix_ids(tokenizer, prefix: str) -> list[int]:
    """The forced prefix (white space folded) tokenized as the model would write it: Whisper's text tokens
    start with a space, so the prefix does too."""
    text = " ".join(prefix.split())
    return tokenizer.encode(" " + text, add_special_tokens=False) if text else []
