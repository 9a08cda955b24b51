"""Matrix-product FLOPs of a LoRA training step on a decoder-only LM, counted from shapes.

    model = Decoder.from_config(AutoConfig.from_pretrained(path))
    work = per_example([300, 100], head_positions=150)          # one packed row, 150 supervised
    flops = training_flops(model, work, StepSetup(lora_rank=16))
    hfu = flops.total / step_seconds / gemm_flops_per_s         # hardware FLOP utilisation

Why count rather than quote "6 x parameters": tokens/s compares systems with each other,
not with the machine. Hardware FLOP utilisation (HFU) divides the matmul FLOPs a step
executes by its time and by the GEMM rate the same machine reaches on the model's own
shapes (bench/train_speed.py measures both). What a step executes differs between systems,
so the count follows what each one computes:

- every position goes forward through the body (2·in·out per projection) and back through it
  for the input gradient (2·in·out again); frozen base weights get no weight gradient, and
  the first layer's q/k/v need no input gradient while the embeddings are frozen;
- LoRA's own products per adapted projection and position: x·Aᵀ and ·Bᵀ forward, then the
  gradient through B, B's and A's weight gradients and the input gradient: 6·r·(in + out);
- attention: the scores Q·Kᵀ and P·V cost 2·head_dim·heads per (query, key) pair scored,
  and backward as flash kernels run it (the scores recomputed, then dV, dP, dQ, dK): seven
  products in all. A causal example of length L scores L(L+1)/2 pairs; a row under an
  explicit [T, T] mask (padding, or packed examples kept apart by a block-diagonal mask)
  scores all T² of them;
- the LM head (2·hidden·vocab per position forward, as much again for the input gradient)
  on the positions a system applies it to: tunery only where the next token is supervised,
  transformers on every position; a chunked head that recomputes its logits in backward
  (TRL's) pays a third product;
- gradient checkpointing recomputes the forward of the body, its LoRA and its attention.

Elementwise work (norms, rotary, activations, softmax, dropout, the optimiser) is not
counted: HFU says how close the matmuls come to the GEMM rate. Pure arithmetic, no torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
EMBEDDING_READERS = ("q_proj", "k_proj", "v_proj")  # layer 0's inputs that come straight from the embeddings
# Forward Q·Kᵀ and P·V; backward (flash): Q·Kᵀ again, dV = Pᵀ·dO, dP = dO·Vᵀ, dQ = dS·K, dK = dSᵀ·Q.
ATTENTION_FORWARD_PRODUCTS = 2
ATTENTION_PRODUCTS = 7


@dataclass(frozen=True)
class Decoder:
    """The matrix shapes of a llama-style decoder: attention with grouped KV heads, a gated MLP."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int

    @classmethod
    def from_config(cls, config) -> Decoder:
        """From a transformers config (LlamaConfig and its kin)."""
        heads = config.num_attention_heads
        return cls(
            hidden=config.hidden_size,
            layers=config.num_hidden_layers,
            heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            intermediate=config.intermediate_size,
            vocab=config.vocab_size,
        )

    def projections(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear layer of one decoder layer."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        h, i = self.hidden, self.intermediate
        return {
            "q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h),
        }  # fmt: skip

    def matmul_params(self) -> int:
        """Weights that take part in matrix products: every projection and the LM head."""
        body = sum(n_in * n_out for n_in, n_out in self.projections().values())
        return self.layers * body + self.hidden * self.vocab

    def gemm_shapes(self) -> dict[tuple[int, int], int]:
        """Distinct (in, out) products of one forward pass over a position, and how often each occurs."""
        shapes: dict[tuple[int, int], int] = {}
        for shape in self.projections().values():
            shapes[shape] = shapes.get(shape, 0) + self.layers
        head = (self.hidden, self.vocab)
        shapes[head] = shapes.get(head, 0) + 1
        return shapes


@dataclass(frozen=True)
class Work:
    """What a step (or a whole run) puts through the model."""

    tokens: int = 0  # positions through the body, padding included
    attention_pairs: int = 0  # (query, key) pairs scored, per layer and head
    head_positions: int = 0  # positions the LM head is applied to

    def __add__(self, other: Work) -> Work:
        return Work(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def causal_pairs(length: int) -> int:
    """(query, key) pairs of causal attention over one sequence: each position sees itself and those before."""
    return length * (length + 1) // 2


def per_example(lengths: Iterable[int], head_positions: int) -> Work:
    """Examples each attending causally to itself alone: packed rows split at their boundaries
    (tunery's varlen attention, flash-attention's varlen kernels) or unpadded rows."""
    lengths = list(lengths)
    return Work(sum(lengths), sum(causal_pairs(n) for n in lengths), head_positions)


def masked_rows(rows: int, width: int, head_positions: int) -> Work:
    """Rows under an explicit [width, width] mask: padded rows, or one packed row whose examples a
    block-diagonal mask keeps apart. The kernel scores every pair, masked or not."""
    return Work(rows * width, rows * width * width, head_positions)


@dataclass(frozen=True)
class StepSetup:
    """How a system runs its step, as far as the matrix products go."""

    lora_rank: int  # 0: no adapter
    lora_targets: tuple[str, ...] = PROJECTIONS
    embedding_grad: bool = False  # the embeddings' output requires grad (enable_input_require_grads)
    recompute_body: bool = False  # gradient checkpointing
    recompute_head: bool = False  # a chunked head that recomputes its logits in backward


@dataclass(frozen=True)
class Flops:
    body: int  # the frozen projections: forward and input gradient
    lora: int  # the adapters' own products
    attention: int  # scores and values
    head: int  # the LM head

    @property
    def total(self) -> int:
        return self.body + self.lora + self.attention + self.head

    def __add__(self, other: Flops) -> Flops:
        return Flops(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def scaled(self, factor: float) -> Flops:
        return Flops(*(round(getattr(self, f.name) * factor) for f in fields(self)))


def per_position(model: Decoder, setup: StepSetup) -> tuple[int, int]:
    """(body, LoRA) FLOPs one position costs, summed over the layers."""
    forwards = 2 if setup.recompute_body else 1
    body = lora = 0
    for name, (n_in, n_out) in model.projections().items():
        frozen_input = name in EMBEDDING_READERS and not setup.embedding_grad
        input_grad_layers = model.layers - (1 if frozen_input else 0)
        body += 2 * n_in * n_out * (forwards * model.layers + input_grad_layers)
        if setup.lora_rank and name in setup.lora_targets:
            r = setup.lora_rank
            forward = 2 * r * (n_in + n_out)  # x·Aᵀ, then ·Bᵀ
            weights = 2 * r * (2 * n_out + n_in)  # grad·B, B's and A's weight gradients
            lora += (forwards * forward + weights) * model.layers + 2 * r * n_in * input_grad_layers
    return body, lora


def training_flops(model: Decoder, work: Work, setup: StepSetup) -> Flops:
    """Matmul FLOPs of forward and backward over `work`."""
    body, lora = per_position(model, setup)
    attention_products = ATTENTION_PRODUCTS + (ATTENTION_FORWARD_PRODUCTS if setup.recompute_body else 0)
    per_pair = attention_products * 2 * model.head_dim * model.heads * model.layers
    head_products = 3 if setup.recompute_head else 2  # forward, input gradient (and the recomputed logits)
    return Flops(
        body=body * work.tokens,
        lora=lora * work.tokens,
        attention=per_pair * work.attention_pairs,
        head=head_products * 2 * model.hidden * model.vocab * work.head_positions,
    )


def weighted_gemm_rate(model: Decoder, tokens: int, seconds: Mapping[tuple[int, int], float]) -> float:
    """FLOP/s of the model's products over `tokens` rows, each shape weighted by how often a forward
    pass runs it: the rate a step's matmuls could reach. `seconds[(in, out)]` is one product's time."""
    counts = model.gemm_shapes()
    flops = sum(count * 2 * tokens * n_in * n_out for (n_in, n_out), count in counts.items())
    return flops / sum(count * seconds[shape] for shape, count in counts.items())


def mfu_per_supervised_token(supervised_per_s: float, model: Decoder, gemm_flops_per_s: float) -> float:
    """The older measure: 4 x matmul parameters (forward and input gradient, head included) per
    supervised token. Prompt tokens' work is not in it, so on chat data it stays well under 100%."""
    return supervised_per_s * 4 * model.matmul_params() / gemm_flops_per_s


def utilisation(flops: float, seconds: float, gemm_flops_per_s: float) -> float:
    """Share of the GEMM rate that `flops` done in `seconds` reach."""
    return flops / max(seconds, 1e-9) / gemm_flops_per_s
