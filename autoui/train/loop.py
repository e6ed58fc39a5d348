"""The supervised fine-tuning loop behind `train/sft.py`, on HF accelerate.

One optimizer step = `grad_accum` micro-batches per process (gradients all-reduced only on
the last one). Distribution, device placement and mixed precision come from `accelerate
launch` (configs in `train/accelerate/`); each process streams its own share of the shards.
Logs go to `RUN_DIR/metrics.jsonl` (main process): one `{"kind": "train", ...}` line per
logged step, one `{"kind": "val", ...}` line per validation.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from autoui.data.screen import data_screen, write_model_screen
from autoui.metrics import evaluate
from autoui.train.box_text import BoxTextLoss, BoxTextSpec
from autoui.train.checkpoint import latest_checkpoint, load_trainer_state, save_checkpoint, set_rng_state
from autoui.train.config import TrainConfig, TrainConfigError
from autoui.train.features import FeatureCache, cached_vision, tower_fingerprint
from autoui.train.goal_words import GoalWordLoss
from autoui.train.grounding import GroundingLoss, GroundingSpec
from autoui.train.predict import batched, predict_texts
from autoui.train.schedule import make_scheduler
from autoui.train.setup import (build_model, freeze_unused_parameters, load_tokenizer, load_val_pairs, make_builder, make_optimizer,
                                make_train_loader, mixed_precision, prompt_limits)
from autoui.train.word_pages import WordPageLoss, WordPageSpec

log = logging.getLogger("autoui.train")
METRICS_FILE = "metrics.jsonl"
TERMS = ("ground_loss", "goal_word_loss", "box_text_loss", "word_pages_loss")  # auxiliary terms, logged when on
FINAL_DIR = "final"


class Trainer:
    """Build everything from a `TrainConfig` (resuming if asked), then `train()`."""

    def __init__(self, cfg: TrainConfig):
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.cfg, self.run_dir = cfg, Path(cfg.out)
        self.acc = Accelerator(mixed_precision=mixed_precision(cfg))
        ckpt = latest_checkpoint(cfg.resume) if cfg.resume else None
        if ckpt is None and (self.run_dir / "train_config.json").exists():
            raise TrainConfigError(f"{self.run_dir} already holds a run: pass --resume {self.run_dir} or another --out")
        self.acc.wait_for_everyone()  # every rank checks before the main one writes into RUN_DIR
        try:
            self.screen = data_screen(cfg.data)
        except ValueError as exc:
            raise TrainConfigError(str(exc)) from exc
        set_seed(cfg.seed)
        self.tokenizer = load_tokenizer(cfg, ckpt or cfg.init)
        model = build_model(cfg, self.tokenizer, ckpt or cfg.init).to(self.acc.device)
        freeze_unused_parameters(model)
        optimizer = make_optimizer(model, cfg)
        self.word_pages = self._word_pages(model, optimizer)
        self.scheduler = make_scheduler(optimizer, cfg.warmup, cfg.steps, cfg.min_lr_ratio)
        self.model, self.optimizer = self.acc.prepare(model, optimizer)
        self.raw = self.acc.unwrap_model(self.model)
        self.step = 0
        if ckpt is not None:
            self._restore(ckpt)
        self.cache = self._feature_cache()
        self.grounding = (GroundingLoss(self.raw, GroundingSpec(cfg.grounding_weight, cfg.grounding_layers,
                                                                readout=cfg.grounding_readout))
                          if cfg.grounding_weight > 0 else None)
        self.goal_words = (GoalWordLoss(self.raw, GroundingSpec(cfg.goal_word_weight, cfg.goal_word_layers,
                                                                cfg.goal_word_head, cfg.grounding_readout))
                           if cfg.goal_word_weight > 0 else None)
        self.box_text = (BoxTextLoss(self.raw, BoxTextSpec(cfg.box_text_weight, cfg.box_text_boxes))
                         if cfg.box_text_weight > 0 else None)
        builder = make_builder(cfg, self.tokenizer, self.raw.config)
        self.loader = make_train_loader(cfg, builder, self.acc.process_index, self.acc.num_processes,
                                        skip_batches=self.step * cfg.grad_accum)
        self.val_pairs = load_val_pairs(cfg)
        log.info("model %s: %.2fM params (%.2fM trainable); %d processes, precision %s",
                 self.raw.config.preset, self.raw.num_parameters() / 1e6,
                 sum(p.numel() for p in self.raw.parameters() if p.requires_grad) / 1e6,
                 self.acc.num_processes, self.acc.mixed_precision)

    # ---- state -------------------------------------------------------------------------
    def _data_state(self) -> dict[str, Any]:
        c = self.cfg
        return {"batches": self.step * c.grad_accum, "batch_size": c.batch_size, "grad_accum": c.grad_accum,
                "workers": c.workers, "world_size": self.acc.num_processes, "seed": c.seed,
                "data": list(c.data), "sample": c.sample, "task_weight": c.task_weight, "shuffle_buffer": c.shuffle_buffer}

    def _restore(self, ckpt: Path) -> None:
        state, rng = load_trainer_state(ckpt, self.acc.process_index)
        now = self._data_state()
        changed = {k: (v, now[k]) for k, v in state["data"].items() if k != "batches" and now.get(k) != v}
        if changed:
            log.warning("resuming with a different data setup %s (saved, now): the data order will not "
                        "match an uninterrupted run", changed)
        if (self.word_pages is not None) != ("word_pages_head" in state):
            raise TrainConfigError(f"{ckpt}: --word-pages-weight must be on or off as in the run that saved it")
        if self.word_pages is not None and state.get("word_pages_target", "words") != self.cfg.word_pages_target:
            raise TrainConfigError(f"{ckpt}: --word-pages-target must be {state.get('word_pages_target', 'words')!r} "
                                   "as in the run that saved it")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        if self.word_pages is not None:
            self.word_pages.load_state_dict(state["word_pages_head"])
        set_rng_state(rng)
        log.info("resumed %s at step %d", ckpt, self.step)

    def _word_pages(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> WordPageLoss | None:
        """The word-pages term, its head in its own optimizer group (before the scheduler sees the groups)."""
        c = self.cfg
        if c.word_pages_weight <= 0:
            return None
        if c.cache_vision_features:
            raise TrainConfigError("--word-pages-weight trains the vision tower; it cannot go with --cache-vision-features")
        try:
            spec = WordPageSpec(c.word_pages_weight, c.word_pages, c.word_pages_vocab, target=c.word_pages_target)
            term = WordPageLoss(model, spec, self.acc.device, tokenizer=self.tokenizer)
        except ValueError as exc:
            raise TrainConfigError(str(exc)) from exc
        optimizer.add_param_group({"params": term.parameters(), "weight_decay": 0.0, "lr": c.lr * c.word_pages_lr_scale})
        return term

    def _feature_cache(self) -> FeatureCache | None:
        c = self.cfg
        if not c.cache_vision_features:
            return None
        fp = tower_fingerprint(self.raw.vision, (self.raw.config.vision, self.raw.config.num_vision_layers_used))
        return FeatureCache(c.feature_cache_items, c.feature_cache_dir, fingerprint=fp)

    def save(self) -> Path:
        """Checkpoint the current step (every process must call it)."""
        state = {"step": self.step, "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "data": self._data_state()}
        if self.word_pages is not None:
            state["word_pages_head"] = self.word_pages.state_dict()
            state["word_pages_target"] = self.word_pages.spec.target
        path = save_checkpoint(self.acc, self.run_dir, self.step, self.model, self.tokenizer, state,
                               keep=self.cfg.keep_checkpoints)
        if self.acc.is_main_process:  # so `autoui eval-miniwob --model` shows a checkpoint the screens it learned on
            write_model_screen(path, self.screen)
        return path

    # ---- one step ----------------------------------------------------------------------
    def _loss(self, batch: dict[str, Any], micro: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """-> (the loss to minimise, each auxiliary term of `TERMS` alone, when on); `micro`: the
        micro-batch's index in the step, which picks its word pages."""
        dev = self.acc.device
        args = (batch["pixel_values"].to(dev), batch["input_ids"].to(dev), batch["attention_mask"].to(dev),
                batch["labels"].to(dev))
        ctx = cached_vision(self.raw, self.cache, batch["keys"]) if self.cache is not None else contextlib.nullcontext()
        with ctx:
            _, loss = self.model(*args, return_logits=False)
        terms = {}
        for name, aux in (("ground_loss", self.grounding), ("goal_word_loss", self.goal_words),
                          ("box_text_loss", self.box_text)):
            if aux is not None:
                term = aux.loss(batch)
                loss = loss + aux.spec.weight * term
                terms[name] = term.detach().float()
        if self.word_pages is not None:
            with self.acc.autocast():
                term = self.word_pages.loss((self.cfg.seed, self.step, micro, self.acc.process_index))
            loss = loss + self.word_pages.spec.weight * term
            terms["word_pages_loss"] = term.detach().float()
        return loss, terms

    def _next(self, it: Any) -> dict[str, Any]:
        try:
            return next(it)
        except StopIteration:
            raise RuntimeError(f"process {self.acc.process_index}: the training stream has no samples "
                               "(fewer episodes or shards than processes x workers, or filters drop everything)") from None

    def train_step(self, it: Any) -> dict[str, float]:
        """One optimizer step over `grad_accum` micro-batches -> global loss, tokens and samples."""
        k = self.cfg.grad_accum
        self.model.train()
        loss_sum = torch.zeros((), device=self.acc.device)
        term_sums: dict[str, torch.Tensor] = {}
        tokens = samples = 0
        for i in range(k):
            batch = self._next(it)
            # all-reduce gradients only on the last micro-batch
            sync = contextlib.nullcontext() if i == k - 1 else self.acc.no_sync(self.model)
            with sync:
                loss, terms = self._loss(batch, i)
                self.acc.backward(loss / k)
            loss_sum += loss.detach().float()
            for name, term in terms.items():
                term_sums[name] = term_sums.get(name, 0.0) + term
            tokens += int(batch["attention_mask"].sum())
            samples += len(batch["keys"])
        if self.word_pages is not None and self.acc.num_processes > 1:  # its head is outside the wrapped model
            for p in self.word_pages.parameters():
                p.grad = self.acc.reduce(p.grad, reduction="mean")
        if self.cfg.max_grad_norm > 0:
            self.acc.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        names = sorted(term_sums)
        stats = torch.tensor([loss_sum.item() / k, tokens, samples, *(float(term_sums[m]) / k for m in names)],
                             device=self.acc.device, dtype=torch.float64)
        stats = self.acc.reduce(stats, reduction="sum")
        n = self.acc.num_processes
        out = {"loss": float(stats[0]) / n, "tokens": float(stats[1]), "samples": float(stats[2]), "lr": lr}
        out.update({m: float(v) / n for m, v in zip(names, stats[3:])})
        return out

    # ---- validation --------------------------------------------------------------------
    def validate(self) -> dict[str, Any] | None:
        """Greedy-decode the validation steps (split over processes) and score them with the AITW metric."""
        from accelerate.utils import gather_object

        if not self.val_pairs:
            return None
        self.raw.eval()
        mine = self.val_pairs[self.acc.process_index::self.acc.num_processes]
        preds: dict[tuple[str, int], str] = {}
        for chunk in batched(mine, self.cfg.val_batch_size):
            with self.acc.autocast():
                texts = predict_texts(self.raw, self.tokenizer, [s for _, s in chunk], self.cfg.fmt,
                                      self.cfg.max_new_tokens or None, prompt_limits(self.cfg))
            preds.update({(st.episode_id, int(st.step_id)): t for (st, _), t in zip(chunk, texts)})
        merged: dict[tuple[str, int], str] = {}
        for part in gather_object([preds]):
            merged.update(part)
        extra = {}
        if self.word_pages is not None and self.acc.is_main_process:  # held-out pages (their own keys); main logs
            with self.acc.autocast():
                extra["val_word_pages_accuracy"] = sum(self.word_pages.accuracy(("val", i)) for i in range(4)) / 4
        self.raw.train()
        result = evaluate([st for st, _ in self.val_pairs], merged)
        self._log({"kind": "val", "step": self.step, **{f"val_{k}": v for k, v in result["overall"].items()},
                   **extra, "val_subsets": result["subsets"]})
        return result

    # ---- driving -----------------------------------------------------------------------
    def _log(self, record: dict[str, Any]) -> None:
        if self.acc.is_main_process:
            with open(self.run_dir / METRICS_FILE, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def _start_run_dir(self) -> None:
        if not self.acc.is_main_process:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.cfg.save(self.run_dir)
        path = self.run_dir / METRICS_FILE
        if path.exists():  # resuming: drop what the interrupted run logged after its checkpoint
            keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= self.step]
            path.write_text("".join(ln + "\n" for ln in keep))

    def train(self) -> Path | None:
        """Run to `steps` (or `stop_after` more steps); returns RUN_DIR/final, or None when stopped early."""
        c = self.cfg
        self._start_run_dir()
        self.acc.wait_for_everyone()
        end = min(c.steps, self.step + c.stop_after) if c.stop_after else c.steps
        it = iter(self.loader)
        bar = tqdm(total=c.steps, initial=self.step, desc="train", unit="step", disable=not self.acc.is_main_process)
        saved_at = None
        while self.step < end:
            t0 = time.perf_counter()
            out = self.train_step(it)
            self.step += 1
            dt = time.perf_counter() - t0
            rec = {"kind": "train", "step": self.step, "loss": out["loss"], "lr": out["lr"],
                   "samples_per_s": out["samples"] / dt, "tokens_per_s": out["tokens"] / dt, "step_time_s": dt}
            rec.update({m: out[m] for m in TERMS if m in out})
            if self.step % c.log_every == 0 or self.step == end:
                self._log(rec)
            bar.update(1)
            bar.set_postfix(loss=f"{out['loss']:.4f}", lr=f"{out['lr']:.2e}", sps=f"{rec['samples_per_s']:.1f}")
            if c.val_every and self.step % c.val_every == 0:
                self.validate()
            if c.save_every and self.step % c.save_every == 0:
                self.save()
                saved_at = self.step
        bar.close()
        if self.step < c.steps:
            if saved_at != self.step:
                self.save()
            return None
        if self.val_pairs and not (c.val_every and self.step % c.val_every == 0):
            self.validate()
        return self._save_final()

    def _save_final(self) -> Path:
        final = self.run_dir / FINAL_DIR
        if self.acc.is_main_process:
            self.raw.save_pretrained(final, tokenizer=self.tokenizer)
            self.cfg.save(final)  # eval_aitw.py reads the action format from it
            write_model_screen(final, self.screen)  # which screenshots it learned on (autoui.data.screen)
            if self.cache is not None:
                log.info("feature cache: %d hits, %d misses", self.cache.hits, self.cache.misses)
        self.acc.wait_for_everyone()
        return final
