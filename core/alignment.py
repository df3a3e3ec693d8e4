"""Word times from a decoder's cross-attention, as openai/whisper's timing.py finds them.

A few cross-attention heads of a Whisper decoder ("alignment heads") look at the audio frames a token is
spoken in. One teacher-forced pass of the model over a segment's text tokens gives those heads' weights
(tokens x encoder frames); each head is normalised over the tokens and median-filtered along time, the heads
are averaged, and dynamic time warping finds the monotonic path through the matrix. The frame where the
path first reaches a word's first token is the word's start; where it reaches the next word, its end.

Each mode times its words with the model that wrote its tokens: the student with its own heads (chosen by
measurement and stored with it), the teacher and speculative decoding with the teacher's. Speculative
decoding's tokens are the teacher's and both run this same pass on them in the same batches, so its word
times are the teacher's to the bit. (Reading the attention from the passes decoding already made would
save this pass, but their shapes differ between greedy and speculative decoding: the floats, and so in
rare ties the path, would too.)
"""

from __future__ import annotations

import string
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch

from core.decoding import new_cache

MEDIAN_FILTER_WIDTH = 7  # openai's medfilt_width
FRAMES_PER_SECOND = 50  # encoder frames: 1500 per 30 s
PREPEND_PUNCTUATION = "\"'“¿([{-"  # joined to the word after it
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"  # joined to the word before it
SENTENCE_END = ".。!！?？"
MAX_MEDIAN_WORD_S = 0.7  # openai's cap on the median word duration that bounds implausibly long words
NO_SPACE_LANGUAGES = {"zh", "ja", "th", "lo", "my", "yue"}  # words are split on characters, not spaces


@dataclass(frozen=True)
class TimedWord:
    """A word with its tokens and its times in seconds from the start of the aligned audio."""

    text: str
    tokens: tuple[int, ...]
    start_s: float
    end_s: float
    probability: float


def heads_of(model) -> list[tuple[int, int]]:
    """The (layer, head) pairs a model's generation config names; openai's default without them: every head of
    the upper half of the decoder's layers."""
    named = getattr(model.generation_config, "alignment_heads", None)
    layers, heads = model.config.decoder_layers, model.config.decoder_attention_heads
    valid = [(int(layer), int(head)) for layer, head in named or () if layer < layers and head < heads]
    return valid or [(layer, head) for layer in range(layers // 2, layers) for head in range(heads)]


@torch.inference_mode()
def attention(model, encoder_states: torch.Tensor, sequences: Sequence[Sequence[int]],
              heads: Sequence[tuple[int, int]], eot: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One teacher-forced pass over `sequences` (rows padded with end-of-text; causal, so padding changes
    nothing before it): per row, the heads' cross-attention (heads, positions, frames) and the probability
    of each next token of the row (positions - 1)."""
    decoder = model.model.decoder
    layers = sorted({layer for layer, _ in heads})
    queries: dict[int, torch.Tensor] = {}

    def keep_query(layer: int):
        def hook(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            queries[layer] = module.q_proj(hidden) * module.scaling
        return hook

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), eot, dtype=torch.long, device=encoder_states.device)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(list(sequence))
    cache = new_cache()
    hooks = [decoder.layers[layer].encoder_attn.register_forward_pre_hook(keep_query(layer), with_kwargs=True)
             for layer in layers]
    try:
        hidden = decoder(input_ids=ids, encoder_hidden_states=encoder_states, past_key_values=cache,
                         use_cache=True).last_hidden_state
    finally:
        for hook in hooks:
            hook.remove()
    logits = model.proj_out(hidden).float()[..., :eot]  # text tokens only, as openai reads the probabilities
    maps = []
    for layer, head in heads:
        attn = decoder.layers[layer].encoder_attn
        size = attn.head_dim
        q = queries[layer][..., head * size : (head + 1) * size].float()  # (rows, positions, size)
        k = cache.cross_attention_cache.layers[layer].keys[:, head].float()  # (rows, frames, size)
        maps.append(q @ k.transpose(1, 2))
    scores = torch.stack(maps, dim=1)  # (rows, heads, positions, frames), before the softmax
    out = []
    for row, sequence in enumerate(sequences):
        n = len(sequence)
        probs = torch.softmax(logits[row, : n - 1], dim=-1)
        nexts = torch.tensor([t if t < eot else 0 for t in sequence[1:]], device=probs.device)
        token_probs = probs.gather(-1, nexts[:, None])[:, 0]
        out.append((scores[row, :, :n], token_probs))
    return out


def median_filter(x: torch.Tensor, width: int) -> torch.Tensor:
    """Median over a sliding window on the last axis, edges reflected (openai's, on the CPU)."""
    if width <= 1 or x.shape[-1] <= width // 2:
        return x
    pad = width // 2
    flat = x.reshape(1, -1, x.shape[-1])
    padded = torch.nn.functional.pad(flat, (pad, pad), mode="reflect")[0]
    return padded.unfold(-1, width, 1).median(dim=-1).values.reshape(x.shape)


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest monotonic path through `cost` (tokens x frames) from its first cell to its last, steps
    right, down or diagonal; returns the token and frame index of every step (openai's dtw_cpu).

    Row by row, with the step right folded in by a running minimum: cost(i, j) = S(j) + min over k <= j of
    (best(i, k) - S(k)), where S is the row's running sum and best the cheapest arrival from the row above."""
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0.0
    from_left = np.zeros((n + 1, m + 1), dtype=bool)
    from_diagonal = np.zeros((n + 1, m + 1), dtype=bool)
    for i in range(1, n + 1):
        above, diagonal = total[i - 1, 1:], total[i - 1, :-1]
        from_diagonal[i, 1:] = diagonal <= above
        arrive = cost[i - 1] + np.minimum(diagonal, above)
        running = np.concatenate(([0.0], np.cumsum(cost[i - 1])))
        best = np.minimum.accumulate(arrive - running[1:]) + running[1:]
        total[i, 1:] = best
        from_left[i, 1:] = best < arrive
    i, j, path = n, m, []
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        if from_left[i, j]:
            j -= 1
        elif from_diagonal[i, j]:
            i, j = i - 1, j - 1
        else:
            i -= 1
    path.reverse()
    steps = np.array(path, dtype=int).reshape(-1, 2)
    return steps[:, 0], steps[:, 1]


def split_words(tokenizer, tokens: Sequence[int], eot: int, spaced: bool = True) -> list[tuple[str, list[int]]]:
    """Text tokens grouped into words: pieces that decode to whole characters, joined into a word until a
    piece starts with a space or is punctuation (`spaced`), else one word per character group."""
    pieces: list[tuple[str, list[int]]] = []
    pending: list[int] = []
    for token in tokens:
        pending.append(token)
        text = tokenizer.decode(pending)
        if "\ufffd" not in text:  # a whole character: multi-byte characters span tokens
            pieces.append((text, pending))
            pending = []
    if pending:
        pieces.append((tokenizer.decode(pending), pending))
    if not spaced:
        return pieces
    words: list[tuple[str, list[int]]] = []
    for text, ids in pieces:
        starts_word = text.startswith(" ") or text.strip() in string.punctuation or ids[0] >= eot or not words
        if starts_word:
            words.append((text, list(ids)))
        else:
            words[-1] = (words[-1][0] + text, words[-1][1] + list(ids))
    return words


def merge_punctuation(words: list[TimedWord]) -> list[TimedWord]:
    """Opening punctuation joins the word after it, closing punctuation the word before it (openai's rule),
    keeping that word's times."""
    out: list[TimedWord] = []
    carried: TimedWord | None = None
    for word in words:
        if carried is not None:
            word = TimedWord(carried.text + word.text, carried.tokens + word.tokens, word.start_s, word.end_s,
                             word.probability)
            carried = None
        if word.text.startswith(" ") and word.text.strip() and word.text.strip() in PREPEND_PUNCTUATION:
            carried = word
        elif out and not out[-1].text.endswith(" ") and word.text in APPEND_PUNCTUATION:
            last = out[-1]
            out[-1] = TimedWord(last.text + word.text, last.tokens + word.tokens, last.start_s, last.end_s,
                                last.probability)
        else:
            out.append(word)
    if carried is not None:
        out.append(carried)
    return out


def align(scores: torch.Tensor, token_probs: torch.Tensor, words: list[tuple[str, list[int]]], start: int,
          frames: int) -> list[TimedWord]:
    """Word times (seconds from the segment's start) from one row of `attention`: `start` is the position of
    the first text token's predecessor (the no-timestamps token), `frames` the encoder frames of audio."""
    frames = max(1, min(frames, scores.shape[-1]))
    weights = torch.softmax(scores[..., :frames], dim=-1)
    std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
    weights = median_filter((weights - mean) / (std + 1e-10), MEDIAN_FILTER_WIDTH)
    n_tokens = sum(len(ids) for _, ids in words)
    matrix = weights.mean(dim=0)[start : start + n_tokens + 1]  # the rows predicting each text token and end-of-text
    rows, columns = dtw(-matrix.double().cpu().numpy())
    jumps = np.concatenate(([True], np.diff(rows) > 0))
    jump_times = columns[jumps] / FRAMES_PER_SECOND
    boundaries = np.concatenate(([0], np.cumsum([len(ids) for _, ids in words])))
    probs = token_probs[start : start + n_tokens].tolist()
    out = []
    for k, (text, ids) in enumerate(words):
        a, b = boundaries[k], boundaries[k + 1]
        out.append(TimedWord(text, tuple(ids), float(jump_times[min(a, len(jump_times) - 1)]),
                             float(jump_times[min(b, len(jump_times) - 1)]), float(np.mean(probs[a:b])) if b > a else 0.0))
    return bound_long_words(out)


def bound_long_words(words: list[TimedWord]) -> list[TimedWord]:
    """A word much longer than the median ending or starting a sentence has swallowed a pause: cut it to twice
    the median (openai's rule), keeping the end that touches the speech."""
    durations = [w.end_s - w.start_s for w in words if w.end_s > w.start_s]
    if not durations:
        return words
    longest = 2 * min(MAX_MEDIAN_WORD_S, float(np.median(durations)))
    out = list(words)
    for i in range(1, len(out)):
        word = out[i]
        if word.end_s - word.start_s <= longest:
            continue
        if word.text.strip() in SENTENCE_END:
            out[i] = replace(word, end_s=word.start_s + longest)
        elif out[i - 1].text.strip() in SENTENCE_END:
            out[i] = replace(word, start_s=word.end_s - longest)
    return out


def is_spaced(language: str | None) -> bool:
    return (language or "en") not in NO_SPACE_LANGUAGES
