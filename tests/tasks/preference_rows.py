"""Preference rows for the tests: the right JSON answer chosen over a corrupted one."""

from __future__ import annotations


def right_answer(i: int) -> str:
    return f'{{"item": {i % 7}, "quantity": {i % 5}}}'


def wrong_answer(i: int) -> str:
    return f'{{"item": {(i + 3) % 7}, "quantity": {(i + 2) % 5}}}'


def pair_rows(n: int, shape: str = "prompt") -> list[dict]:
    """n pairs in one of the accepted shapes: prompt, messages, openai, unpaired (2 rows per pair)."""
    rows: list[dict] = []
    for i in range(n):
        question = f"item {i % 7} quantity {i % 5}"
        chosen, rejected = right_answer(i), wrong_answer(i)
        if shape == "prompt":
            rows.append({"prompt": question, "chosen": chosen, "rejected": rejected})
        elif shape == "messages":
            rows.append({"messages": [{"role": "user", "content": question}],
                         "chosen": [{"role": "assistant", "content": chosen}],
                         "rejected": [{"role": "assistant", "content": rejected}]})  # fmt: skip
        elif shape == "openai":
            rows.append({"input": {"messages": [{"role": "user", "content": question}]},
                         "preferred_output": [{"role": "assistant", "content": chosen}],
                         "non_preferred_output": [{"role": "assistant", "content": rejected}]})  # fmt: skip
        else:
            rows.append(
                {"prompt": [{"role": "user", "content": question}], "completion": chosen, "label": True}
            )
            rows.append(
                {"prompt": [{"role": "user", "content": question}], "completion": rejected, "label": False}
            )
    return rows
