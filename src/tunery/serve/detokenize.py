"""An answer's text as it grows, exactly `tokenizer.decode(tokens, skip_special_tokens=True)` at
every token, without decoding the whole answer again at every step.

    text = AnswerText(tokenizer)
    for token in answer:
        tokens.append(token)
        so_far = text.after(tokens)     # == tokenizer.decode(tokens, skip_special_tokens=True)

Why: decoding the whole answer at every step costs O(length) per row and step (transformers'
`decode` also walks the list in Python first), which made a batch of long answers slow for
every row in it. For byte-level BPE decoders (GPT-2, Llama 3, SmolLM2, Qwen) the text is the
UTF-8 decoding of the tokens' bytes, so once the text ends on a whole character, later tokens
only append: `tokenizers`' own `DecodeStream` gives the new piece; while a character is
incomplete, only the tokens since the last whole character are decoded. Other decoders
(SentencePiece's leading-space rules, WordPiece's `##`, clean-up of spaces) can change earlier
text, so they keep the full decode.
"""

from __future__ import annotations


class AnswerText:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.stream = None  # a tokenizers DecodeStream, where it gives the exact text
        self.complete, self.settled = "", 0  # text of tokens[:settled], ending on a whole character
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is not None and type(backend.decoder).__name__ == "ByteLevel" and not cleans_up(tokenizer):
            from tokenizers.decoders import DecodeStream

            self.backend, self.stream = backend, DecodeStream(skip_special_tokens=True)

    def after(self, tokens: list[int]) -> str:
        """The text of `tokens`, called once per token appended (the same list every time)."""
        if self.stream is None:
            return self.decode(tokens)
        piece = self.stream.step(self.backend, tokens[-1])
        if piece is None:  # in the middle of a character: decode what follows the last whole one
            return self.complete + self.decode(tokens[self.settled :])
        self.complete, self.settled = self.complete + piece, len(tokens)
        return self.complete

    def decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)


def cleans_up(tokenizer) -> bool:
    """Whether decode rewrites spaces around punctuation (context the appended piece cannot see);
    transformers skips that clean-up for BPE models unless forced."""
    if not getattr(tokenizer, "clean_up_tokenization_spaces", False):
        return False
    model = type(tokenizer.backend_tokenizer.model).__name__
    forced = getattr(
        tokenizer, "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output", False
    )
    return model != "BPE" or bool(forced)
