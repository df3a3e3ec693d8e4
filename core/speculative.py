"""Lean greedy decoding for Whisper: one window, our own KV cache, and a speculative variant.

transformers' generate() is general (any model pair, sampling, many stopping rules) and its per-step
bookkeeping costs as much as a base-sized decoder step on a CPU. It also no longer takes a forced
prefix for Whisper. `GreedyDecoder` is generate(num_beams=1)'s greedy search without timestamps,
token for token, and can continue a prefix: a live update passes the words it already committed, so
they cost one parallel pass instead of one step each.

`SpeculativeDecoder`: the student drafts, the teacher verifies. Both decoders share the teacher's
encoder output, keep their own KV cache, and a draft is verified by one teacher forward over all
its tokens. Greedy acceptance keeps exactly the teacher's tokens: a draft token is kept only if it
is the teacher's own argmax at that position.

A draft step projects only its last position, and, given a draft vocabulary (a distilled student
ships one as shortlist.json), only onto those tokens: on a CPU the 51865-wide output projection is
most of a small decoder's step. This is exact by construction: a token outside the list only costs
a rejected draft, because the teacher still verifies over the whole vocabulary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

NEG_INF = float("-inf")
MIN_DRAFT = 1
MAX_DRAFT = 12
DRAFT_VOCABULARY_FILE = "shortlist.json"  # in the student's folder


def load_draft_vocabulary(student_dir: str | Path) -> list[int] | None:
    """The token ids a student drafts from, when its folder ships a list (None: the whole vocabulary)."""
    path = Path(student_dir) / DRAFT_VOCABULARY_FILE
    return json.loads(path.read_text())["ids"] if path.is_file() else None


@dataclass
class DraftStats:
    drafted: int = 0
    accepted: int = 0
    teacher_calls: int = 0
    draft_calls: int = 0


def _new_cache():
    from transformers import DynamicCache, EncoderDecoderCache

    return EncoderDecoderCache(DynamicCache(), DynamicCache())


def _truncate(cache, length: int) -> None:
    """Drop cached positions past `length` (transformers 5 crops by a negative count)."""
    excess = cache.get_seq_length() - length
    if excess > 0:
        cache.crop(-excess)


class GreedyDecoder:
    """Greedy decoding of one window (batch size 1), with Whisper's suppressed tokens masked as generate() does."""

    def __init__(self, model, generation_config):
        self.model = model
        self.eot = generation_config.eos_token_id
        vocab = model.config.vocab_size
        self.suppress = torch.zeros(vocab, dtype=torch.bool)
        self.suppress[list(generation_config.suppress_tokens or [])] = True
        self.suppress_at_begin = self.suppress.clone()
        self.suppress_at_begin[list(generation_config.begin_suppress_tokens or [])] = True

    def _logits(self, model, tokens: list[int], encoder_states: torch.Tensor, cache, last_only: bool = False) -> torch.Tensor:
        """(positions, vocab) logits for `tokens` after what `cache` holds; `last_only` projects one position."""
        ids = torch.tensor([tokens], device=encoder_states.device)
        hidden = model.model.decoder(
            input_ids=ids, encoder_hidden_states=encoder_states, past_key_values=cache, use_cache=True
        ).last_hidden_state[0]
        return model.proj_out(hidden[-1:] if last_only else hidden).float()

    def _pick(self, logits: torch.Tensor, at_begin: bool = False) -> list[int]:
        """Greedy choice per row. Whisper's begin rule (no blank, no end-of-text) holds at the start of the
        transcript only: after a forced prefix the model may end at once."""
        mask = (self.suppress_at_begin if at_begin else self.suppress).to(logits.device)
        return logits.masked_fill(mask, NEG_INF).argmax(-1).tolist()

    def _start(self, prompt: list[int], prefix: Sequence[int], encoder_states: torch.Tensor, cache) -> list[int]:
        """Read prompt and prefix in one pass; return them with the model's first token."""
        tokens = [*prompt, *prefix]
        logits = self._logits(self.model, tokens, encoder_states, cache, last_only=True)
        return tokens + self._pick(logits, at_begin=not prefix)

    @staticmethod
    def _transcript(tokens: list[int], begin: int, eot: int) -> list[int]:
        out = tokens[begin:]
        return out[:-1] if out and out[-1] == eot else out

    @torch.inference_mode()
    def decode(self, prompt: list[int], encoder_states: torch.Tensor, max_new_tokens: int,
               prefix: Sequence[int] = ()) -> tuple[list[int], DraftStats]:
        """Tokens after `prompt` (the prefix first) up to end-of-text, at most `max_new_tokens` in all."""
        cache = _new_cache()
        tokens = self._start(prompt, prefix, encoder_states, cache)
        while tokens[-1] != self.eot and len(tokens) - len(prompt) < max_new_tokens:
            tokens += self._pick(self._logits(self.model, tokens[-1:], encoder_states, cache, last_only=True))
        return self._transcript(tokens[: len(prompt) + max_new_tokens], len(prompt), self.eot), DraftStats()


class SpeculativeDecoder(GreedyDecoder):
    """Greedy speculative decoding over one window at a time (batch size 1, like assisted generation)."""

    def __init__(self, teacher, student, generation_config, draft_tokens: int, adaptive: bool = True,
                 draft_vocabulary: Sequence[int] | None = None):
        super().__init__(teacher, generation_config)
        self.teacher = teacher
        self.student = student
        self.draft_tokens = draft_tokens
        self.adaptive = adaptive
        vocab = teacher.config.vocab_size
        weight = student.proj_out.weight.detach()
        ids = torch.arange(vocab) if draft_vocabulary is None else torch.tensor(sorted(set(draft_vocabulary)))
        self.draft_ids = ids.to(weight.device)
        self.draft_weight = weight if draft_vocabulary is None else weight[self.draft_ids]
        self.draft_suppress = self.suppress[ids].to(weight.device)

    def _draft(self, tokens: list[int], encoder_states: torch.Tensor, cache) -> int:
        """The student's next token: its last position only, projected onto the draft vocabulary."""
        hidden = self.student.model.decoder(
            input_ids=torch.tensor([tokens], device=encoder_states.device), encoder_hidden_states=encoder_states,
            past_key_values=cache, use_cache=True,
        ).last_hidden_state[0, -1]
        logits = (hidden @ self.draft_weight.T).float().masked_fill(self.draft_suppress, NEG_INF)
        return int(self.draft_ids[logits.argmax()])

    @torch.inference_mode()
    def decode(self, prompt: list[int], encoder_states: torch.Tensor, max_new_tokens: int,
               prefix: Sequence[int] = ()) -> tuple[list[int], DraftStats]:
        """Tokens after `prompt` (the prefix first) up to end-of-text, and how the drafts fared."""
        stats = DraftStats()
        teacher_cache, draft_cache = _new_cache(), _new_cache()
        begin = len(prompt)

        # the teacher reads the prompt and prefix and gives the first token itself
        tokens = self._start(prompt, prefix, encoder_states, teacher_cache)
        stats.teacher_calls += 1
        draft_seen = 0  # tokens already in the draft model's cache
        k = self.draft_tokens

        while tokens[-1] != self.eot and len(tokens) - begin < max_new_tokens:
            # draft: catch the student up on accepted tokens, then propose k tokens greedily
            draft = []
            pending = tokens[draft_seen:]
            for _ in range(min(k, max_new_tokens - (len(tokens) - begin))):
                token = self._draft(pending, encoder_states, draft_cache)
                stats.draft_calls += 1
                draft.append(token)
                pending = [token]
                if token == self.eot:
                    break
            draft_seen = len(tokens) + len(draft) - 1  # the last draft token was produced, not yet read

            # verify: one teacher pass over the last accepted token and every draft token
            verify_in = [tokens[-1]] + draft
            logits = self._logits(self.teacher, verify_in, encoder_states, teacher_cache)
            stats.teacher_calls += 1
            choice = self._pick(logits)
            accepted = 0
            while accepted < len(draft) and draft[accepted] == choice[accepted]:
                accepted += 1
            stats.drafted += len(draft)
            stats.accepted += accepted
            new = draft[:accepted]
            if not (new and new[-1] == self.eot):
                new.append(choice[accepted])  # the teacher's correction, or a bonus token after a full match
            tokens.extend(new[: max_new_tokens - (len(tokens) - begin)])

            # forget what the caches hold beyond the kept tokens
            _truncate(teacher_cache, len(tokens) - 1)
            draft_seen = min(draft_seen, len(tokens) - 1)
            _truncate(draft_cache, draft_seen)
            if self.adaptive:
                k = min(MAX_DRAFT, k + 2) if accepted == len(draft) else max(MIN_DRAFT, k - 1)

        return self._transcript(tokens, begin, self.eot), stats
