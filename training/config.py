"""The training settings: the shipped recipe's defaults, overridden from the command line."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    seed: int = 0
    dialogues: int = 320_000  # batch_size x steps = 240000 are used: no dialogue is seen twice
    vocab_size: int = 2048
    hidden_size: int = 320
    layers: int = 4
    heads: int = 8
    intermediate_size: int = 960
    max_len: int = 512
    batch_size: int = 64
    steps: int = 3750
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    warmup: int = 200
    weight_decay: float = 0.01
    # A guard, not a schedule: the learning rate follows the step count only (reproducible); a run
    # that reaches this many minutes stops early and says so.
    minutes: float = 60.0
    # One thread: on the shared 2-core CPU, two threads contend with other processes and run 2-4x slower.
    threads: int = 1
    # Weight of the islands' tokens in the loss (0 = never trained on). The shell writes islands,
    # so the model never has to produce them; predicting them is a cheap auxiliary task that
    # rewards copying (an island repeats the searched name several times).
    island_weight: float = 0.3
    checksum_every: int = 250  # log a checksum of the weights (a rerun can be compared step by step)
    # "auto": the GPU when there is one. On CUDA the run is deterministic (deterministic kernels,
    # eager attention, no TF32), so a rerun on the same GPU and torch version is bit-identical.
    device: str = "auto"
    # A fine-tune: start from this saved model (its weights and its tokenizer) instead of from scratch.
    # "" trains from scratch (the shipped recipe's first stage).
    init: str = ""
