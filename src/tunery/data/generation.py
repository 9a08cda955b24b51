"""Rewrite texts through a local model: the engine of paraphrase and back-translation.

    paraphrase = load_rewriter("runs/my-run/merged", PARAPHRASE_TEMPLATE)
    paraphrase(["Where is the station?"])            # ["How do I get to the station?"]
    to_de = load_rewriter("Helsinki-NLP/opus-mt-en-de")  # an encoder-decoder: the text goes in as is

A causal model gets the template filled with `{text}` (and `{language}`), through
its chat template when it has one; an encoder-decoder (Marian, T5) gets the filled
template as its input, `{text}` by default. Outputs are sampled with a seed, so
several variants of one row can differ, and cut at the first blank line, since
small models ramble on. This is the only data module that imports torch.
"""

from __future__ import annotations

from collections.abc import Callable

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

    from tunery.models import load_tokenizer, resolve_model

    path = resolve_model(model)
    seq2seq = bool(getattr(AutoConfig.from_pretrained(path), "is_encoder_decoder", False))
    loader = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    network = loader.from_pretrained(path).eval()
    tokenizer = load_tokenizer(path)
    tokenizer.padding_side = "left" if not seq2seq else tokenizer.padding_side
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
        outputs: list[str] = []
        for start in range(0, len(texts), batch_size):
            prompts = [prompt_for(t) for t in texts[start : start + batch_size]]
            batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=seq2seq)
            with torch.no_grad():
                generated = network.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=temperature > 0,
                    temperature=temperature if temperature > 0 else None,
                    pad_token_id=tokenizer.pad_token_id,
                )
            new_tokens = generated if seq2seq else generated[:, batch["input_ids"].shape[1] :]
            outputs += [
                _first_paragraph(t) for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            ]
        return outputs

    return rewrite


def _first_paragraph(text: str) -> str:
    return text.strip().split("\n\n")[0].strip().strip('"').strip()
