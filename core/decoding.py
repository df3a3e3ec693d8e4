"""One decoding loop for every mode, modelled on openai/whisper's decoding.py.

A decoding step is: the verifying model reads the tokens it has not seen yet and gives logits; Whisper's
logit rules mask them; a token picker chooses. Greedy decoding is that step one token at a time. Speculative
decoding is the same step with a draft model in front: the draft proposes a few tokens, the verifying
model (the teacher) reads them all in one pass, and the picker's choice at each position is kept while it
equals the draft. So the student and the teacher run `decode(model, ..., draft=None)` and speculative
decoding runs `decode(teacher, ..., draft=student)`: one loop, one set of rules, one picker, one loop guard,
and speculative output is the teacher's output by construction, with timestamps too (the rules at a draft
position see the drafted tokens before it, which are exactly the teacher's tokens whenever it is kept).

Pluggable parts:
- `LogitRule`s: suppressed tokens, begin-suppression, and Whisper's timestamp rules, as transformers'
  generate() applies them (its processors, in its order), so each loop's tokens equal generate()'s.
- `TokenPicker`: greedy, or sampling at a temperature by the Gumbel-max trick with noise fixed by the
  window's seed and the position. That makes Whisper's temperature fallback deterministic: the teacher and
  speculative decoding sample the same tokens, and a draft sampled with the same noise is usually accepted.
- `LoopGuard`: a block of tokens repeated past a limit ends the window (kept once), the same for every mode.
- `DraftModel` (core/draft.py): the student's lean decoder step proposing tokens from its own caches, and the
  policy that sizes each draft from the cost model; exact whatever it proposes: the teacher verifies every token.

Greedy rows batch (finished rows are padded with end-of-text); with a draft model the batch is one window.
Whisper's no-speech probability is read from the first step's logits at the start-of-transcript position,
before any rule, as openai/whisper does: no extra pass.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from core.draft import DraftModel

NEG_INF = float("-inf")
LOOP_MAX_PERIOD = 48  # longest repeated block (text tokens) the loop guard looks for
LOOP_MIN_COPIES = 3  # a block said this many times in a row (twice is speech: a refrain, a repeated answer) ...
LOOP_MIN_SPAN = 12  # ... covering this many tokens is a loop: a 4-token phrase said thrice, "no, no," six times


@dataclass(frozen=True)
class SpecialTokens:
    """The ids the rules need, read from a Whisper generation config."""

    eot: int
    sot: int
    no_speech: int
    no_timestamps: int
    timestamp_begin: int
    vocab_size: int
    suppress: tuple[int, ...]
    begin_suppress: tuple[int, ...]
    max_initial_timestamp_index: int | None

    @classmethod
    def from_config(cls, config, vocab_size: int) -> "SpecialTokens":
        # <|nospeech|> sits just before <|notimestamps|> in every Whisper vocabulary (transformers relies on it too)
        return cls(
            eot=config.eos_token_id, sot=config.decoder_start_token_id, no_speech=config.no_timestamps_token_id - 1,
            no_timestamps=config.no_timestamps_token_id, timestamp_begin=config.no_timestamps_token_id + 1,
            vocab_size=vocab_size, suppress=tuple(config.suppress_tokens or ()),
            begin_suppress=tuple(config.begin_suppress_tokens or ()),
            max_initial_timestamp_index=getattr(config, "max_initial_timestamp_index", None),
        )

    def text_only(self, tokens: Sequence[int]) -> list[int]:
        return [t for t in tokens if t < self.eot]


# ---- logit rules ---------------------------------------------------------------------------------


class LogitRule:
    """Masks logits in place. `sampled[k]` is what row k has produced after its prompt and forced prefix."""

    def apply(self, logits: torch.Tensor, sampled: list[list[int]]) -> None:
        raise NotImplementedError


class SuppressTokens(LogitRule):
    """Tokens Whisper never writes (speaker tags, music notes, ...): the config's `suppress_tokens`."""

    def __init__(self, ids: Sequence[int], vocab_size: int, device):
        self.mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
        self.mask[list(ids)] = True

    def apply(self, logits, sampled):
        logits.masked_fill_(self.mask, NEG_INF)


class SuppressAtBegin(LogitRule):
    """No blank and no end-of-text as the first token (the config's `begin_suppress_tokens`)."""

    def __init__(self, ids: Sequence[int]):
        self.ids = list(ids)

    def apply(self, logits, sampled):
        for k, row in enumerate(sampled):
            if not row:
                logits[k, self.ids] = NEG_INF


class TimestampRules(LogitRule):
    """Whisper's timestamp grammar (openai's ApplyTimestampRules, transformers' WhisperTimeStampLogitsProcessor):
    timestamps come in pairs except before end-of-text, never decrease, the first token is a timestamp no
    later than max_initial_timestamp, and a timestamp is forced when all timestamps together outweigh the
    best text token."""

    def __init__(self, special: SpecialTokens):
        self.s = special

    def apply(self, logits, sampled):
        begin, eot = self.s.timestamp_begin, self.s.eot
        logits[:, self.s.no_timestamps] = NEG_INF
        for k, row in enumerate(sampled):
            last = len(row) >= 1 and row[-1] >= begin
            penultimate = len(row) < 2 or row[-2] >= begin
            if last:
                if penultimate:
                    logits[k, begin:] = NEG_INF
                else:
                    logits[k, :eot] = NEG_INF
            stamps = [t for t in row if t >= begin]
            if stamps:
                floor = stamps[-1] if last and not penultimate else stamps[-1] + 1
                logits[k, begin:floor] = NEG_INF
            if not row:
                logits[k, :begin] = NEG_INF
                if self.s.max_initial_timestamp_index is not None:
                    logits[k, begin + self.s.max_initial_timestamp_index + 1 :] = NEG_INF
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        stamp_mass = logprobs[:, begin:].logsumexp(dim=-1)
        best_text = logprobs[:, :begin].max(dim=-1).values
        logits[:, :begin].masked_fill_((stamp_mass > best_text).unsqueeze(-1), NEG_INF)


def logit_rules(special: SpecialTokens, timestamps: bool, after_prefix: bool, device) -> list[LogitRule]:
    """generate()'s processors in generate()'s order. After a forced prefix the transcript has begun, so the
    begin rule is off: a prefix that already says everything may end at once."""
    rules: list[LogitRule] = []
    if special.begin_suppress and not after_prefix:
        rules.append(SuppressAtBegin(special.begin_suppress))
    if special.suppress:
        rules.append(SuppressTokens(special.suppress, special.vocab_size, device))
    if timestamps:
        rules.append(TimestampRules(special))
    return rules


# ---- token pickers -------------------------------------------------------------------------------


class TokenPicker:
    """Greedy (temperature 0) or a deterministic sample: argmax(logits / T + Gumbel noise), the noise drawn
    from a generator seeded by (seed, position). The same position always gets the same noise, whichever
    loop and batch row asks, so sampling is reproducible and speculative decoding stays exact."""

    def __init__(self, temperature: float = 0.0):
        self.temperature = temperature

    def pick(self, logits: torch.Tensor, positions: Sequence[int], seeds: Sequence[int]) -> list[int]:
        """One token per row of `logits`; row k is at `positions[k]` of a window seeded `seeds[k]`."""
        if self.temperature <= 0:
            return logits.argmax(-1).tolist()
        size = logits.shape[-1]
        noise = torch.stack([self._gumbel(seed, p, size) for p, seed in zip(positions, seeds)]).to(logits.device)
        return (logits.float() / self.temperature + noise).argmax(-1).tolist()

    @staticmethod
    def _gumbel(seed: int, position: int, size: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + position)
        uniform = torch.rand(size, generator=generator).clamp_(1e-20, 1.0)
        return -torch.log(-torch.log(uniform))


# ---- loop guard ----------------------------------------------------------------------------------


class LoopGuard:
    """Ends a window that repeats itself: the same block of text tokens at least LOOP_MIN_COPIES times in a
    row, the copies covering at least LOOP_MIN_SPAN tokens. Timestamps are ignored (a looping segment gets
    new ones). The cut keeps the block once, so a loop costs a few tokens instead of running to the length
    cap, and the cut decode goes to Whisper's temperature fallback (core/gate.py)."""

    def __init__(self, eot: int, max_period: int = LOOP_MAX_PERIOD, min_copies: int = LOOP_MIN_COPIES,
                 min_span: int = LOOP_MIN_SPAN):
        self.eot, self.max_period, self.min_copies, self.min_span = eot, max_period, min_copies, min_span

    def cut(self, sampled: Sequence[int]) -> int | None:
        """None, or how many of `sampled` to keep when its last token completes a loop."""
        if not sampled or sampled[-1] >= self.eot:
            return None
        where = [i for i, t in enumerate(sampled) if t < self.eot]
        text = [sampled[i] for i in where]
        for period in range(1, min(self.max_period, len(text) // self.min_copies) + 1):
            copies = max(self.min_copies, math.ceil(self.min_span / period))
            span = period * copies
            if span > len(text) or text[-1] != text[-1 - period]:
                continue
            tail = text[-span:]
            if tail == tail[:period] * copies:
                return where[len(text) - span + period]  # keep everything up to the first copy's end
        return None


# ---- models --------------------------------------------------------------------------------------


def new_cache():
    from transformers import DynamicCache, EncoderDecoderCache

    return EncoderDecoderCache(DynamicCache(), DynamicCache())


def truncate_cache(cache, length: int) -> None:
    """Forget cached positions past `length` (transformers 5 crops by a negative count)."""
    excess = cache.get_seq_length() - length
    if excess > 0:
        cache.crop(-excess)


class DecoderModel:
    """A Whisper decoder and its output projection, reading tokens into a KV cache."""

    def __init__(self, model):
        self.decoder = model.model.decoder
        self.head = model.proj_out

    def logits(self, ids: torch.Tensor, encoder_states: torch.Tensor, cache, positions: Sequence[int] | None = None):
        """(rows, positions, vocab) float logits of `ids` (rows, n) read after what `cache` holds;
        `positions` picks which of the n to project (None: all)."""
        hidden = self.decoder(input_ids=ids, encoder_hidden_states=encoder_states, past_key_values=cache,
                              use_cache=True).last_hidden_state
        if positions is not None:
            hidden = hidden[:, list(positions)]
        return self.head(hidden).float()


def first_position_logits(model, token: int, encoder_states: torch.Tensor) -> torch.Tensor:
    """(rows, vocab) logits of a Whisper decoder reading one token at position 0, without ever computing the
    cross-attention keys and values over the 1500 encoder frames.

    One query attends to the encoder: q.(W_k e_t) = (W_k^T q).e_t, and sum_t p_t (W_v e_t + b) = W_v (sum_t p_t
    e_t) + b, so each head costs two products with the encoder output instead of projecting all of it (~60x
    fewer multiplications; whisper-base on this CPU: ~40 ms instead of ~0.2 s, the output projection included).
    That makes Whisper's no-speech probability, read at this position, cheap for a mode whose own decoder
    is not the judge.
    Self-attention over a single token is its value projection."""
    decoder = model.model.decoder
    rows = encoder_states.shape[0]
    ids = torch.full((rows, 1), token, device=encoder_states.device)
    hidden = (decoder.embed_tokens(ids) + decoder.embed_positions.weight[:1])[:, 0]  # (rows, d)
    for layer in decoder.layers:
        attn = layer.self_attn
        hidden = hidden + attn.out_proj(attn.v_proj(layer.self_attn_layer_norm(hidden)))
        cross = layer.encoder_attn
        heads, width = cross.num_heads, cross.head_dim
        q = (cross.q_proj(layer.encoder_attn_layer_norm(hidden)) * cross.scaling).view(rows, heads, width)
        u = torch.einsum("rhj,hjd->rhd", q, cross.k_proj.weight.to(q.dtype).view(heads, width, -1))  # W_k^T q per head
        weights = torch.softmax(torch.einsum("rhd,rtd->rht", u, encoder_states), dim=-1)
        mixed = torch.einsum("rht,rtd->rhd", weights, encoder_states)  # sum_t p_t e_t per head
        context = torch.einsum("rhd,hjd->rhj", mixed, cross.v_proj.weight.to(q.dtype).view(heads, width, -1))
        if cross.v_proj.bias is not None:
            context = context + cross.v_proj.bias.view(heads, width)
        hidden = hidden + cross.out_proj(context.reshape(rows, -1))
        hidden = hidden + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(hidden))))
    return model.proj_out(decoder.layer_norm(hidden)).float()


# ---- the loop ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """What to decode, the same for every mode of a request; per window, a length cap and a sampling seed."""

    prompt: tuple[int, ...]
    timestamps: bool
    limits: tuple[int, ...]  # most tokens after the prompt (the forced prefix included), per window
    seeds: tuple[int, ...] = ()  # sampling noise per window (temperature > 0); default 0
    prefix: tuple[int, ...] = ()
    temperature: float = 0.0

    def seed(self, row: int) -> int:
        return self.seeds[row] if self.seeds else 0


@dataclass(frozen=True)
class Pass:
    """One verifying pass of speculative decoding: the draft it read and how many of its tokens were kept.
    The tokens it added are the kept ones plus the teacher's own (its correction, or a bonus after a full
    match), from `position` on."""

    position: int  # index in Decoded.tokens of the first token this pass added
    draft: tuple[int, ...]
    accepted: int


@dataclass
class Decoded:
    """One window's decode: tokens after the prompt (prefix first, no end-of-text), and what the safeguards read."""

    tokens: list[int]
    sum_logprob: float = 0.0
    logprob_count: int = 0  # tokens whose log-probability is in the sum (end-of-text included)
    no_speech_prob: float = 0.0  # this model's P(<|nospeech|>) at the start-of-transcript position
    looped: bool = False  # the loop guard ended it
    truncated: bool = False  # the length cap ended it
    temperature: float = 0.0
    model_passes: int = 0  # forward passes of the verifying model
    passes: list[Pass] = field(default_factory=list)  # speculative decoding only
    draft_s: float = 0.0
    verify_s: float = 0.0

    @property
    def avg_logprob(self) -> float:
        return self.sum_logprob / max(self.logprob_count, 1)

    @property
    def drafted(self) -> int:
        return sum(len(p.draft) for p in self.passes)

    @property
    def accepted(self) -> int:
        return sum(p.accepted for p in self.passes)


@torch.inference_mode()
def decode(model: DecoderModel, encoder_states: torch.Tensor, task: Task, special: SpecialTokens,
           draft: DraftModel | None = None, clock: Callable[[], float] = time.perf_counter,
           draft_states: torch.Tensor | None = None, guard: LoopGuard | None = None) -> list[Decoded]:
    """Decode every row of `encoder_states` (one row when there is a draft model; `draft_states`: the draft
    model's own encoder output, when its encoder is not the verifying model's; `guard`: None for the
    default loop guard)."""
    if draft is not None and len(encoder_states) != 1:
        raise ValueError("speculative decoding decodes one window at a time")
    if len(task.limits) != len(encoder_states):
        raise ValueError("one length cap per window")
    rules = logit_rules(special, task.timestamps, bool(task.prefix), encoder_states.device)
    picker = TokenPicker(task.temperature)
    guard = guard or LoopGuard(special.eot)
    if draft is None:
        return _greedy(model, encoder_states, task, special, rules, picker, guard, clock)
    return [_speculative(model, draft, encoder_states, encoder_states if draft_states is None else draft_states,
                         task, special, rules, picker, guard, clock)]


def _first_step(model: DecoderModel, encoder_states, task: Task, special: SpecialTokens, cache):
    """Read prompt and prefix; return the logits for the first new token and P(<|nospeech|>) per row."""
    start = [*task.prompt, *task.prefix]
    ids = torch.tensor([start] * len(encoder_states), device=encoder_states.device)
    sot = task.prompt.index(special.sot)
    logits = model.logits(ids, encoder_states, cache, positions=[sot, len(start) - 1])
    no_speech = torch.softmax(logits[:, 0], dim=-1)[:, special.no_speech].tolist()
    return logits[:, 1], no_speech


def _apply(rules: list[LogitRule], logits: torch.Tensor, sampled: list[list[int]]) -> torch.Tensor:
    for rule in rules:
        rule.apply(logits, sampled)
    return logits


def _logprobs(logits: torch.Tensor, chosen: Sequence[int]) -> list[float]:
    """Log-probability of each row's chosen token under the masked logits (openai's sum_logprobs)."""
    index = torch.tensor(list(chosen), device=logits.device)[:, None]
    return (logits.gather(-1, index)[:, 0] - logits.logsumexp(-1)).tolist()


class _Transcript:
    """One window's tokens as a loop adds them: the log-probability sum, the loop guard and the length cap.
    Greedy and speculative decoding keep their tokens through it, so both end a window the same way."""

    def __init__(self, result: Decoded, task: Task, row: int, guard: LoopGuard, eot: int):
        self.result, self.guard, self.eot = result, guard, eot
        self.prefix, self.limit = len(task.prefix), task.limits[row]
        self.sampled: list[int] = []  # what the rules see: the tokens after the prompt and the forced prefix
        self.ended = self.prefix >= self.limit

    def add(self, token: int, logprob: float) -> bool:
        """Add one chosen token; True when the window has ended (end-of-text, a loop, the length cap)."""
        result = self.result
        result.sum_logprob += logprob
        result.logprob_count += 1
        if token == self.eot:
            self.ended = True
            return True
        result.tokens.append(token)
        self.sampled.append(token)
        keep = self.guard.cut(self.sampled)
        if keep is not None:
            del result.tokens[self.prefix + keep:]
            result.looped = self.ended = True
        elif len(result.tokens) >= self.limit:
            result.truncated = self.ended = True
        return self.ended


def _greedy(model, encoder_states, task, special, rules, picker, guard, clock) -> list[Decoded]:
    rows, eot = len(encoder_states), special.eot
    seeds = [task.seed(k) for k in range(rows)]
    cache = new_cache()
    started = clock()
    logits, no_speech = _first_step(model, encoder_states, task, special, cache)
    outs = [_Transcript(Decoded(list(task.prefix), no_speech_prob=p, temperature=task.temperature, model_passes=1),
                        task, k, guard, eot) for k, p in enumerate(no_speech)]
    while True:
        logits = _apply(rules, logits, [out.sampled for out in outs])
        chosen = picker.pick(logits, [len(out.result.tokens) for out in outs], seeds)
        for out, token, logprob in zip(outs, chosen, _logprobs(logits, chosen)):
            if not out.ended:
                out.add(token, logprob)
        if all(out.ended for out in outs):
            break
        last = [eot if out.ended else out.result.tokens[-1] for out in outs]  # finished rows read padding
        logits = model.logits(torch.tensor(last, device=encoder_states.device)[:, None], encoder_states, cache)[:, 0]
        for out in outs:
            out.result.model_passes += not out.ended
    elapsed = clock() - started
    for out in outs:
        out.result.verify_s = elapsed
    return [out.result for out in outs]


def _propose(draft: DraftModel, state, unread: list[int], out: _Transcript, rules, picker, seed, length: int):
    """Up to `length` draft tokens (fewer at end-of-text, the length cap, or a token the draft doubts)."""
    proposal: list[int] = []
    for _ in range(min(length, out.limit - len(out.result.tokens))):
        step = _apply(rules, draft.decoder.read(state, unread), [out.sampled + proposal])
        (token,) = picker.pick(step, [len(out.result.tokens) + len(proposal)], seed)
        proposal.append(token)
        unread = [token]
        if token == out.eot or (draft.policy.confidence and
                                torch.softmax(step[0], -1)[token] < draft.policy.confidence):
            break
    return proposal


def _verify(model, encoder_states, cache, last: int, proposal: list[int], out: _Transcript, rules, picker, seed):
    """One teacher pass over the last kept token and the draft: keep the picker's choices while they equal
    the draft, then its first different choice (or a bonus token after a full match). The rules of every
    position are applied at once, position j seeing the draft's first j tokens: exactly what a step-by-step
    loop sees wherever it keeps going. Returns how many drafted tokens were kept."""
    verified = model.logits(torch.tensor([[last, *proposal]], device=encoder_states.device), encoder_states, cache)[0]
    rows = _apply(rules, verified, [out.sampled + proposal[:j] for j in range(len(proposal) + 1)])
    base = len(out.result.tokens)
    choices = picker.pick(rows, [base + j for j in range(len(rows))], seed * len(rows))
    accepted = 0
    for j, (choice, logprob) in enumerate(zip(choices, _logprobs(rows, choices))):
        matched = j < len(proposal) and choice == proposal[j]
        accepted += matched
        if out.add(choice, logprob) or not matched:
            break
    return accepted


def _speculative(model, draft: DraftModel, encoder_states, draft_states, task, special, rules, picker, guard,
                 clock) -> Decoded:
    seed = [task.seed(0)]
    cache = new_cache()
    started = clock()
    logits, (no_speech,) = _first_step(model, encoder_states, task, special, cache)
    out = _Transcript(Decoded(list(task.prefix), no_speech_prob=no_speech, temperature=task.temperature,
                              model_passes=1), task, 0, guard, special.eot)
    result = out.result
    if not out.ended:
        logits = _apply(rules, logits, [out.sampled])
        (first,) = picker.pick(logits, [len(result.tokens)], seed)
        out.add(first, _logprobs(logits, [first])[0])
    result.verify_s = clock() - started
    state = draft.decoder.start(draft_states)
    read = [*task.prompt, *task.prefix, *out.sampled]  # everything kept: the teacher's cache lacks the last one
    unread, kept, rejected = list(read), 0, 0  # the draft has read nothing yet
    while not out.ended:
        t0 = clock()
        proposal = _propose(draft, state, unread, out, rules, picker, seed, draft.policy.length(kept, rejected))
        t1 = clock()
        position = len(result.tokens)
        accepted = _verify(model, encoder_states, cache, read[-1], proposal, out, rules, picker, seed)
        result.model_passes += 1
        result.passes.append(Pass(position, tuple(proposal), accepted))
        result.draft_s += t1 - t0
        result.verify_s += clock() - t1
        kept, rejected = kept + accepted, rejected + (accepted < len(proposal))
        added = result.tokens[position:]
        read_before = len(read)
        read += added
        truncate_cache(cache, len(read) - 1)  # forget what the teacher read beyond the kept tokens
        # the draft read everything before this draft and all its tokens but the last one
        draft_read = read_before + min(accepted, len(proposal) - 1)
        draft.decoder.truncate(state, draft_read)
        unread = read[draft_read:]
    return result
