"""Generate text with a local model, in batches: tunery's one generate loop, and the rewriters on it.

    texts = generate_texts(model, tokenizer, ["Hi"], max_new_tokens=32)          # greedy
    texts = generate_texts(model, tokenizer, prompts, sampling={"temperature": 0.7})
    paraphrase = load_rewriter("runs/my-run/merged", PARAPHRASE_TEMPLATE)
    paraphrase(["Where is the station?"])            # ["How do I get to the station?"]
    to_de = load_rewriter("Helsinki-NLP/opus-mt-en-de")  # an encoder-decoder: the text goes in as is

`generate_tokens` is the one call of `model.generate` (greedy unless `sampling` is given;
only the new tokens come back, whatever the architecture); `generate_texts` batches
prompts through it. `tunery.inference.generate` (chat, eval), the rewriters below and the
server's prompt-learning path (`serve.engine.generate_alone`) all go through them. The
server's continuous batching (`serve.scheduler`) is a decode loop of its own, for reasons
its docstring gives.

A rewriter's causal model gets the template filled with `{text}` (and `{language}`),
through its chat template when it has one; an encoder-decoder (Marian, T5) gets the
filled template as its input, `{text}` by default. Outputs are sampled with a seed, so
several variants of one row can differ, and cut at the first blank line, since small
models ramble on. torch is imported inside the functions that need it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PARAPHRASE_TEMPLATE = "Rewrite the following text in other words, keeping its meaning. Reply with the rewritten text only.\n\n{text}"
TRANSLATE_TEMPLATE = (
    "Translate the following text into {language}. Reply with the translation only.\n\n{text}"
)

Rewriter = Callable[[list[str]], list[str]]


def load_rewriter(
    model: str,
    template: str | None = None,
    language: str = "",
    task: str = "paraphrase",
    max_new_tokens: int = 128,
    temperature: float = 0.8,
    seed: int = 0,
    batch_size: int = 8,
) -> Rewriter:
    """A function from texts to rewritten texts through `model` (alias, local directory or hub id).

    Without a `template`, a causal model gets `PARAPHRASE_TEMPLATE` or, for `task="translate"`,
    `TRANSLATE_TEMPLATE`; an encoder-decoder gets the bare text.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from tunery.models import load_tokenizer, model_construction, resolve_model

    path = resolve_model(model)
    seq2seq = bool(getattr(AutoConfig.from_pretrained(path), "is_encoder_decoder", False))
    loader = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    with model_construction():
        network = loader.from_pretrained(path).eval()
    tokenizer = load_tokenizer(path)
    if template is None:
        template = "{text}" if seq2seq else {"translate": TRANSLATE_TEMPLATE}.get(task, PARAPHRASE_TEMPLATE)

    def prompt_for(text: str) -> str:
        filled = template.format(text=text, language=language)
        if seq2seq or not tokenizer.chat_template:
            return filled
        messages = [{"role": "user", "content": filled}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def rewrite(texts: list[str]) -> list[str]:
        torch.manual_seed(seed)
        prompts = [prompt_for(text) for text in texts]
        sampling = {"temperature": temperature} if temperature > 0 else None
        outputs = generate_texts(
            network, tokenizer, prompts, max_new_tokens, batch_size, sampling, add_special_tokens=seq2seq
        )
        return [_first_paragraph(text) for text in outputs]

    return rewrite


def _first_paragraph(text: str) -> str:
    return text.strip().split("\n\n")[0].strip().strip('"').strip()


def generate_texts(
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int = 128,
    batch_size: int = 16,
    sampling: dict | None = None,
    add_special_tokens: bool = False,
    skip_special_tokens: bool = True,
    eos_token_id: int | None = None,
) -> list[str]:
    """The decoded continuation of each prompt, `batch_size` prompts per `generate` call.

    Prompts already rendered through a chat template carry their special tokens, hence
    `add_special_tokens=False` by default. A decoder-only model is padded on the left, so
    that every row's new tokens follow its prompt directly; an encoder-decoder keeps its
    tokenizer's side, since its encoder reads the input whole.
    """
    if not getattr(model.config, "is_encoder_decoder", False):
        tokenizer.padding_side = "left"
    device = next(model.parameters()).device
    texts: list[str] = []
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(
            prompts[start : start + batch_size],
            return_tensors="pt",
            padding=True,
            add_special_tokens=add_special_tokens,
        ).to(device)
        new_tokens = generate_tokens(
            model, batch["input_ids"], batch["attention_mask"], max_new_tokens, sampling,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=eos_token_id,
        )  # fmt: skip
        texts += tokenizer.batch_decode(new_tokens, skip_special_tokens=skip_special_tokens)
    return texts


def generate_tokens(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    sampling: dict | None = None,
    pad_token_id: int | None = None,
    eos_token_id: int | None = None,
) -> torch.Tensor:
    """(rows, new tokens) that `model.generate` adds to the batch: greedy, or sampled with `sampling`.

    `sampling` holds generate's sampling settings (`{"temperature": 0.7, "top_p": 0.9}`);
    seed torch first to repeat it. Without `eos_token_id` the model's generation config decides.
    """
    import torch

    settings = {"do_sample": True, **sampling} if sampling else {"do_sample": False}
    if eos_token_id is not None:
        settings["eos_token_id"] = eos_token_id
    with torch.no_grad():
        output = model.generate(
            input_ids=input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens,
            pad_token_id=pad_token_id, **settings,
        )  # fmt: skip
    # A decoder-only model returns prompt + answer; an encoder-decoder only the answer.
    if getattr(model.config, "is_encoder_decoder", False):
        return output
    return output[:, input_ids.shape[1] :]
