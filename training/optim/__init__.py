"""AdamW and the warmup-stable-decay schedule."""

from training.optim.adamw import build_adamw, set_lr, set_weight_decay
from training.optim.wsd_schedule import wsd_lr

__all__ = ["build_adamw", "set_lr", "set_weight_decay", "wsd_lr"]
