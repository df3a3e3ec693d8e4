"""Train the student's decoder on cached encoder outputs with the Distil-Whisper objective.

loss = 1.0 * cross-entropy(student, teacher pseudo-label) + 0.8 * T^2 * KL(teacher || student) at T = 2
(Gandhi et al., 2023, §3: the weights 0.8 / 1.0; the temperature of their training script). The
teacher side of the KL is its top-k distribution cached by `label` (renormalised over those k tokens;
the student's log-probabilities are over the whole vocabulary), so no teacher runs here, and the
encoder outputs are cached too, so no encoder runs either: a step is the 2-layer decoder only.

Trained: the decoder layers and the decoder's final layer norm (~8.4M parameters for base). Frozen:
the encoder (not even loaded into the step), the token embeddings (tied to the output projection:
51865 x 512 = 53 MB in fp16) and the positional embeddings. They stay the teacher's, so the shipped
file only holds what training changed (~17 MB in fp16) and the app still shares the teacher's
encoder and vocabulary projection with the student.

AdamW with linear warm-up then linear decay; gradient clipping at 1.0. Checkpoints (trainable
weights + optimizer + scheduler + step) every --save-every steps; a rerun resumes from the latest,
and the data order is a function of the step, so a resumed run equals an uninterrupted one.
Heavy runs go through accelerate: `accelerate launch -m core.distill train ...` on one or many GPUs
(bf16 autocast on a GPU); on a CPU it is a plain process.
"""

from __future__ import annotations

import json
import functools
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from core.distill.label import MAX_WER, keep, labels_dir, load_records

STEPS, BATCH, LR, WARMUP = 1500, 8, 3e-4, 100
KL_WEIGHT, CE_WEIGHT, TEMPERATURE = 0.8, 1.0, 2.0
TRAINABLE_PREFIXES = ("model.decoder.layers.", "model.decoder.layer_norm.")


@dataclass
class TrainConfig:
    steps: int = STEPS
    batch_size: int = BATCH  # windows per step and process
    lr: float = LR
    warmup: int = WARMUP
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    kl_weight: float = KL_WEIGHT
    ce_weight: float = CE_WEIGHT
    temperature: float = TEMPERATURE
    max_wer: float = MAX_WER
    decoder_layers: int = 2
    seed: int = 0
    log_every: int = 10
    eval_every: int = 100
    save_every: int = 100
    keep_checkpoints: int = 2
    init: str | None = None  # a student folder to start from instead of the teacher's layers
    stop_at: int | None = None  # stop (with a checkpoint) at this step; the schedule still ends at `steps`

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def train_dir(run: Path) -> Path:
    return Path(run) / "train"


def is_trainable(name: str) -> bool:
    return name.startswith(TRAINABLE_PREFIXES)


def build_student(teacher_dir: Path, decoder_layers: int = 2, init: str | None = None):
    """The initial student in fp32: the teacher's encoder + evenly picked decoder layers, or `init` (grown to
    `decoder_layers` when it has fewer)."""
    from transformers import WhisperForConditionalGeneration

    from core.distill.create import create_student, grow_student

    if init:
        student = WhisperForConditionalGeneration.from_pretrained(init, dtype=torch.float32)
        if student.config.decoder_layers != decoder_layers:
            teacher = WhisperForConditionalGeneration.from_pretrained(teacher_dir, dtype=torch.float32)
            student = grow_student(student, teacher, decoder_layers)
    else:
        teacher = WhisperForConditionalGeneration.from_pretrained(teacher_dir, dtype=torch.float32)
        student = create_student(teacher, decoder_layers)
    for name, param in student.named_parameters():
        param.requires_grad_(is_trainable(name))
    return student


def trainable_state(student) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in student.named_parameters() if is_trainable(n)}


class DecoderStep(torch.nn.Module):
    """The student's decoder and output projection: logits at the label positions only."""

    def __init__(self, student):
        super().__init__()
        self.decoder = student.model.decoder
        self.proj_out = student.proj_out

    def forward(self, input_ids, enc, mask):
        hidden = self.decoder(input_ids=input_ids, encoder_hidden_states=enc).last_hidden_state
        return self.proj_out(hidden[mask])


def distill_loss(logits, targets, topk_ids, topk_logits, temperature=TEMPERATURE, kl_weight=KL_WEIGHT, ce_weight=CE_WEIGHT):
    """Cross-entropy on the pseudo-label + temperature-scaled KL to the teacher's top-k distribution."""
    logits = logits.float()
    ce = F.cross_entropy(logits, targets)
    teacher = torch.softmax(topk_logits.float() / temperature, dim=-1)
    student = torch.log_softmax(logits / temperature, dim=-1).gather(-1, topk_ids)
    kl = (teacher * (torch.log(teacher.clamp_min(1e-12)) - student)).sum(-1).mean() * temperature**2
    agree = (logits.argmax(-1) == targets).float().mean()
    return ce_weight * ce + kl_weight * kl, {"ce": ce.detach(), "kl": kl.detach(), "agree": agree.detach()}


class CachedWindows(torch.utils.data.Dataset):
    """Labelled windows from <run>/labels/cache: encoder output, prompt, label, teacher top-k."""

    def __init__(self, paths: list[Path]):
        self.paths = paths

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from safetensors.torch import load_file

        return load_file(str(self.paths[i]))


def collate(items: list[dict], pad_id: int) -> dict:
    """Decoder input = prompt + label minus its last token; targets are the label tokens."""
    sequences = [torch.cat([it["prompt"], it["tokens"]]).long() for it in items]
    width = max(len(s) for s in sequences) - 1
    input_ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.bool)
    for i, (it, s) in enumerate(zip(items, sequences)):
        input_ids[i, : len(s) - 1] = s[:-1]
        start = len(it["prompt"]) - 1
        mask[i, start : start + len(it["tokens"])] = True
    return {
        "input_ids": input_ids,
        "mask": mask,
        "enc": torch.stack([it["enc"] for it in items]),
        "targets": torch.cat([it["tokens"] for it in items]).long(),
        "topk_ids": torch.cat([it["topk_ids"] for it in items]).long(),
        "topk_logits": torch.cat([it["topk_logits"] for it in items]),
    }


class StepBatches(torch.utils.data.Sampler):
    """Batches as a function of the step: epoch e is permutation (seed, e); resuming skips nothing."""

    def __init__(self, n: int, batch: int, start: int, stop: int, seed: int, world: int = 1, rank: int = 0):
        self.n, self.batch, self.start, self.stop, self.seed, self.world, self.rank = n, batch, start, stop, seed, world, rank

    def __len__(self):
        return max(self.stop - self.start, 0)

    def indices(self, step: int) -> list[int]:
        per_step = self.batch * self.world
        steps_per_epoch = max(self.n // per_step, 1)
        epoch, k = divmod(step, steps_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        if self.n < per_step:
            order = np.resize(order, per_step)
        chunk = order[k * per_step : (k + 1) * per_step]
        return chunk[self.rank * self.batch : (self.rank + 1) * self.batch].tolist()

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield self.indices(step)


def schedule(config: TrainConfig) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        return max(0.0, (config.steps - step) / max(config.steps - config.warmup, 1))

    return factor


def latest_checkpoint(run: Path) -> Path | None:
    found = sorted((train_dir(run) / "ckpt").glob("step_*.pt"))
    return found[-1] if found else None


def _split(run: Path, max_wer: float) -> tuple[list[Path], list[Path]]:
    """Cache files of the kept windows: training, held out."""
    kept = [r for r in load_records(run) if keep(r, max_wer)]
    cache = labels_dir(run) / "cache"
    train = [cache / f"{r['id']}.safetensors" for r in kept if r["split"] == "train"]
    val = [cache / f"{r['id']}.safetensors" for r in kept if r["split"] == "val"]
    return train, val


def window_kind(path: Path) -> str:
    """"real" (core/distill/real.py, ids rNNNNNN) or "synthetic" (TTS, ids wNNNNNN)."""
    return "real" if Path(path).stem.startswith("r") else "synthetic"


@torch.no_grad()
def evaluate_cached(model, loaders: dict, accelerator, config: TrainConfig) -> dict:
    """Teacher-forced loss and token agreement (student argmax == teacher token) on held-out windows: over all
    of them (val_*) and per kind of speech (val_real_agree, val_synthetic_agree), since real voices are what
    the synthetic corpus cannot teach."""
    model.eval()
    keys = ("loss", "ce", "kl", "agree")
    totals, tokens, out = dict.fromkeys(keys, 0.0), 0, {}
    for kind, loader in loaders.items():
        mine, n_kind = dict.fromkeys(keys, 0.0), 0
        for batch in loader:
            batch = _to_device(batch, accelerator.device)
            loss, parts = _batch_loss(model, batch, accelerator, config)
            n = len(batch["targets"])
            n_kind += n
            mine["loss"] += float(loss) * n
            for key in ("ce", "kl", "agree"):
                mine[key] += float(parts[key]) * n
        out[f"val_{kind}_agree"] = round(mine["agree"] / max(n_kind, 1), 5)
        tokens += n_kind
        totals = {k: totals[k] + mine[k] for k in keys}
    model.train()
    return {f"val_{k}": round(v / max(tokens, 1), 5) for k, v in totals.items()} | out | {"val_tokens": tokens}


def _batch_loss(model, batch: dict, accelerator, config: TrainConfig):
    """The Distil-Whisper objective on one batch of cached windows (training and held-out alike)."""
    with accelerator.autocast():
        logits = model(batch["input_ids"], batch["enc"], batch["mask"])
    return distill_loss(logits, batch["targets"], batch["topk_ids"], batch["topk_logits"],
                        config.temperature, config.kl_weight, config.ce_weight)


def _to_device(batch: dict, device) -> dict:
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    out["enc"] = out["enc"].float()  # fp16 cache; autocast picks the compute dtype
    return out


def train(run: Path, teacher_dir: Path, config: TrainConfig, progress: Callable[[str], None] = print) -> dict:
    """Train (or resume) to config.steps; returns the last logged losses."""
    from accelerate import Accelerator

    run = Path(run)
    use_cuda = torch.cuda.is_available()
    precision = "bf16" if use_cuda and torch.cuda.is_bf16_supported() else "no"
    accelerator = Accelerator(mixed_precision=precision)
    out = train_dir(run)
    (out / "ckpt").mkdir(parents=True, exist_ok=True)
    train_paths, val_paths = _split(run, config.max_wer)
    if not train_paths:
        raise RuntimeError(f"no training windows in {labels_dir(run)} pass WER <= {config.max_wer}: label first")

    session = _set_up(accelerator, Path(teacher_dir), config)
    step, elapsed = _resume(session, run, progress)
    # the scheduler is stepped once per optimizer step here, whatever the number of processes
    session.model, session.optimizer = accelerator.prepare(session.model, session.optimizer)
    n_params = sum(p.numel() for p in session.params)
    (out / "config.json").write_text(json.dumps({**asdict(config), "trainable_params": n_params,
                                                 "train_windows": len(train_paths), "val_windows": len(val_paths),
                                                 "device": str(accelerator.device),
                                                 "processes": accelerator.num_processes}, indent=1))
    stop = min(config.steps, config.stop_at or config.steps)
    if step >= stop:
        progress(f"train: already at step {step} of {config.steps}")
        return _last_logged(out)

    loader, val_loaders = _loaders(train_paths, val_paths, session, config, step, stop, use_cuda)
    progress(f"train: {len(train_paths)} windows ({len(val_paths)} held out), {n_params / 1e6:.2f}M trainable "
             f"parameters, steps {step}->{stop} of {config.steps}, batch {config.batch_size}x{accelerator.num_processes}, "
             f"on {accelerator.device}")
    _run_steps(session, loader, val_loaders, config, run, step, stop, elapsed, progress)
    accelerator.wait_for_everyone()
    return _last_logged(out)


@dataclass
class _Session:
    """What one training invocation holds: the student, the step module over its decoder, and its optimizer."""

    accelerator: object
    student: torch.nn.Module
    model: torch.nn.Module  # DecoderStep over the student; accelerator-prepared once resumed
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR

    @property
    def pad_id(self) -> int:
        return self.student.generation_config.eos_token_id


def _set_up(accelerator, teacher_dir: Path, config: TrainConfig) -> _Session:
    """The seed goes first: the student is built from it, so two runs of one config start alike."""
    torch.manual_seed(config.seed)
    student = build_student(teacher_dir, config.decoder_layers, config.init)
    params = [p for n, p in student.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.98), eps=1e-6)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(config))
    return _Session(accelerator, student, DecoderStep(student), params, optimizer, scheduler)


def _resume(session: _Session, run: Path, progress: Callable[[str], None]) -> tuple[int, float]:
    """Step and training seconds of the latest checkpoint, its weights and optimizer state loaded; (0, 0.0) without."""
    checkpoint = latest_checkpoint(run)
    if checkpoint is None:
        return 0, 0.0
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    missing, unexpected = session.student.load_state_dict(state["trainable"], strict=False)
    if unexpected or any(is_trainable(k) for k in missing):
        raise RuntimeError(f"{checkpoint} does not match this student (decoder layers?): delete {train_dir(run)}")
    session.optimizer.load_state_dict(state["optimizer"])
    session.scheduler.load_state_dict(state["scheduler"])
    step = state["step"]
    progress(f"train: resuming from {checkpoint.name} (step {step})")
    _truncate_log(train_dir(run) / "log.jsonl", step)  # lines logged after that checkpoint are redone
    return step, state.get("elapsed_s", 0.0)


def _loaders(train_paths: list[Path], val_paths: list[Path], session: _Session, config: TrainConfig, step: int,
             stop: int, use_cuda: bool):
    """The training batches from `step` on, and one held-out loader per kind of speech present."""
    accelerator = session.accelerator
    pad = functools.partial(collate, pad_id=session.pad_id)
    sampler = StepBatches(len(train_paths), config.batch_size, step, stop, config.seed,
                          accelerator.num_processes, accelerator.process_index)
    workers = min(4, os.cpu_count() or 1) if use_cuda else 0  # on a CPU the cores are for the math
    loader = torch.utils.data.DataLoader(CachedWindows(train_paths), batch_sampler=sampler, num_workers=workers,
                                         collate_fn=pad, pin_memory=use_cuda)
    val_loaders = {kind: torch.utils.data.DataLoader(CachedWindows(paths), batch_size=config.batch_size, collate_fn=pad)
                   for kind in ("synthetic", "real") if (paths := [p for p in val_paths if window_kind(p) == kind])}
    return loader, val_loaders


def _run_steps(session: _Session, loader, val_loaders: dict, config: TrainConfig, run: Path, step: int, stop: int,
               elapsed: float, progress: Callable[[str], None]) -> None:
    """Steps up to `stop`: a log line every log_every, held-out agreement every eval_every, a checkpoint every
    save_every and at `stop`. Only the main process writes the log."""
    accelerator = session.accelerator
    session.model.train()
    window, clock = _Window(), _Clock(elapsed)
    log_file = open(train_dir(run) / "log.jsonl", "a") if accelerator.is_main_process else None
    try:
        if step == 0 and val_loaders and accelerator.is_main_process:
            _write(log_file, {"step": 0, **_evaluate(session, val_loaders, config)})
        for batch in loader:
            window.add(*_train_step(session, batch, config))
            step += 1
            if step % config.log_every == 0 or step == config.steps:
                line = _log_line(step, window, clock, session.scheduler.get_last_lr()[0])
                window = _Window()
                if accelerator.is_main_process:
                    _write(log_file, line)
                    progress(_progress_line(line, config.steps))
            if val_loaders and (step % config.eval_every == 0 or step == config.steps) and accelerator.is_main_process:
                result = {"step": step, **_evaluate(session, val_loaders, config)}
                _write(log_file, result)
                kinds = "".join(f", {k} {result[f'val_{k}_agree']:.3f}" for k in val_loaders)
                progress(f"train: step {step} held-out agreement {result['val_agree']:.3f}{kinds} "
                         f"loss {result['val_loss']:.3f}")
            if step % config.save_every == 0 or step == stop:
                clock.lap()
                _save(session, step, clock.elapsed, config, run)
    finally:
        if log_file:
            log_file.close()


def _train_step(session: _Session, batch: dict, config: TrainConfig):
    """One optimizer step (and one scheduler step); returns the batch's loss and its parts."""
    accelerator = session.accelerator
    batch = _to_device(batch, accelerator.device)
    loss, parts = _batch_loss(session.model, batch, accelerator, config)
    accelerator.backward(loss)
    if config.grad_clip:
        accelerator.clip_grad_norm_(session.params, config.grad_clip)
    session.optimizer.step()
    session.scheduler.step()
    session.optimizer.zero_grad(set_to_none=True)
    return loss, parts


def _evaluate(session: _Session, val_loaders: dict, config: TrainConfig) -> dict:
    accelerator = session.accelerator
    return evaluate_cached(accelerator.unwrap_model(session.model), val_loaders, accelerator, config)


class _Window:
    """Training losses summed over the steps since the last log line, for their means."""

    KEYS = ("loss", "ce", "kl", "agree")

    def __init__(self):
        self.sums, self.n = dict.fromkeys(self.KEYS, 0.0), 0

    def add(self, loss, parts: dict) -> None:
        self.sums["loss"] += float(loss.detach())
        for key in ("ce", "kl", "agree"):
            self.sums[key] += float(parts[key])
        self.n += 1

    def means(self) -> dict:
        return {k: round(self.sums[k] / self.n, 5) for k in self.KEYS}


class _Clock:
    """Training seconds, carried by checkpoints so they sum over resumed invocations."""

    def __init__(self, elapsed: float):
        self.elapsed, self.tick = elapsed, time.perf_counter()

    def lap(self) -> float:
        """Seconds since the last lap, added to the total."""
        now = time.perf_counter()
        seconds, self.tick = now - self.tick, now
        self.elapsed += seconds
        return seconds


def _log_line(step: int, window: _Window, clock: _Clock, lr: float) -> dict:
    seconds = clock.lap()
    return {"step": step, **window.means(), "lr": lr, "s_per_step": round(seconds / window.n, 3),
            "elapsed_s": round(clock.elapsed, 1)}


def _progress_line(line: dict, steps: int) -> str:
    eta = line["s_per_step"] * (steps - line["step"]) / 60
    return (f"train: step {line['step']}/{steps} loss {line['loss']:.3f} (ce {line['ce']:.3f} kl {line['kl']:.3f}) "
            f"agree {line['agree']:.3f} lr {line['lr']:.2e} {line['s_per_step']:.2f} s/step ETA {eta:.1f} min")


def _truncate_log(path: Path, step: int) -> None:
    if path.is_file():
        lines = [x for x in path.read_text().splitlines() if x.strip() and json.loads(x)["step"] <= step]
        path.write_text("".join(x + "\n" for x in lines))


def _write(log_file, line: dict) -> None:
    log_file.write(json.dumps(line) + "\n")
    log_file.flush()


def _save(session: _Session, step: int, elapsed: float, config: TrainConfig, run: Path) -> None:
    """Trainable weights + optimizer state: small, and enough to resume exactly."""
    session.accelerator.wait_for_everyone()
    if not session.accelerator.is_main_process:
        return
    folder = train_dir(run) / "ckpt"
    path = folder / f"step_{step:06d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save({"step": step, "elapsed_s": elapsed, "trainable": trainable_state(session.student),
                "optimizer": session.optimizer.state_dict(), "scheduler": session.scheduler.state_dict(),
                "config": asdict(config)}, tmp)
    tmp.replace(path)
    for old in sorted(folder.glob("step_*.pt"))[: -config.keep_checkpoints]:
        old.unlink()


def read_log(run: Path) -> list[dict]:
    path = train_dir(run) / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _last_logged(out: Path) -> dict:
    lines = read_log(out.parent)
    last = next((x for x in reversed(lines) if "loss" in x), {})
    last_val = next((x for x in reversed(lines) if "val_loss" in x), {})
    return {**last, **{k: v for k, v in last_val.items() if k != "step"}}


def load_trained(run: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The trainable weights of the latest checkpoint, and its metadata."""
    checkpoint = latest_checkpoint(run)
    if checkpoint is None:
        raise RuntimeError(f"no checkpoint under {train_dir(run)}: train first")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return state["trainable"], {"step": state["step"], "elapsed_s": state.get("elapsed_s", 0.0),
                                "config": state.get("config", {})}
