"""Neural-network pieces the tasks, training and evaluation share: the supervised-only loss,
per-example (varlen) attention for packed rows, and the fused LoRA layer. They import torch."""
