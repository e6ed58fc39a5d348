"""Supervised fine-tuning and offline evaluation helpers behind `train/sft.py` and `train/eval_aitw.py`.

- `config`: `TrainConfig` (validated) and the argparse flags generated from it.
- `setup`: tokenizer, model, optimizer, streaming DataLoader and validation set from a config.
- `loop`: `Trainer` (accelerate; gradient accumulation, validation, checkpoints, exact resume).
- `checkpoint`: checkpoint layout, atomic save, RNG state.
- `schedule`: linear warmup + cosine lr.
- `features`: the frozen-vision-tower feature cache.
- `examples` / `predict`: samples -> training batches; batched greedy prediction for scoring.

Import the submodules directly; this package imports nothing heavy on its own.
"""
