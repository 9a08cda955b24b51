"""Generate the example dataset: shop orders written as prose, to be answered as compact JSON.

    python examples/make_example_data.py   # writes examples/data/{train,valid}.jsonl

Every row is made here from the word lists below, so the data is ours to license
(Apache-2.0, like the code). The task is one a small instruct model does not do
out of the box in exactly this format, so fine-tuning visibly changes its answers,
and exact match on the held-out split measures it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

SYSTEM = "Extract the order as compact JSON."
NAMES = [
    "Maria",
    "Ahmed",
    "Yuki",
    "Olga",
    "Carlos",
    "Priya",
    "Tom",
    "Fatima",
    "Lars",
    "Chen",
    "Amara",
    "Diego",
    "Sofia",
    "Ivan",
    "Nadia",
    "Kwame",
    "Elena",
    "Raj",
    "Hana",
    "Pierre",
    "Lucia",
    "Omar",
    "Greta",
    "Mateo",
]
CITIES = [
    "Lisbon",
    "Cairo",
    "Osaka",
    "Kyiv",
    "Lima",
    "Pune",
    "Leeds",
    "Tunis",
    "Oslo",
    "Xian",
    "Accra",
    "Quito",
    "Porto",
    "Riga",
    "Dakar",
    "Bergen",
    "Turin",
    "Hanoi",
    "Nagoya",
    "Lyon",
    "Seville",
    "Muscat",
    "Graz",
    "Cusco",
]
ITEMS = [
    "green tea",
    "coffee beans",
    "olive oil",
    "rice",
    "honey",
    "dark chocolate",
    "oat milk",
    "lentils",
    "almonds",
    "basmati rice",
    "maple syrup",
    "black pepper",
    "sea salt",
    "dried mango",
    "peanut butter",
    "espresso pods",
    "jasmine tea",
    "pasta",
    "cocoa powder",
    "walnuts",
]
UNITS = ["boxes of", "bags of", "jars of", "packs of", "bottles of", "tins of"]
TEMPLATES = [
    "{name} from {city} wants {qty} {unit} {item}.",
    "Please send {qty} {unit} {item} to {name} in {city}.",
    "New order: {name} ({city}) needs {qty} {unit} {item}.",
    "{name} in {city} would like to buy {qty} {unit} {item}, thanks!",
    "Hi, this is {name} from {city}. Could I get {qty} {unit} {item}?",
    "Ship {qty} {unit} {item} to {city} for {name}.",
    "{qty} {unit} {item} for {name}, delivery to {city}.",
    "Customer {name}, city {city}: {qty} {unit} {item}.",
]


def order(rng: random.Random) -> tuple[str, str]:
    fields = {
        "name": rng.choice(NAMES),
        "city": rng.choice(CITIES),
        "item": rng.choice(ITEMS),
        "unit": rng.choice(UNITS),
        "qty": rng.randint(1, 12),
    }
    prose = rng.choice(TEMPLATES).format(**fields)
    answer = {
        "customer": fields["name"],
        "item": fields["item"],
        "quantity": fields["qty"],
        "city": fields["city"],
    }
    return prose, json.dumps(answer)


def row(rng: random.Random) -> dict:
    messages = [{"role": "system", "content": SYSTEM}]
    turns = 2 if rng.random() < 0.1 else 1  # a few multi-turn chats: every answer is trained on
    for _ in range(turns):
        prose, answer = order(rng)
        messages += [{"role": "user", "content": prose}, {"role": "assistant", "content": answer}]
    return {"messages": messages}


def main(
    out: Path = Path(__file__).parent / "data", n_train: int = 320, n_valid: int = 40, seed: int = 2026
) -> None:
    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < n_train + n_valid:
        candidate = row(rng)
        key = json.dumps(candidate["messages"][1:])
        if key not in seen:  # no row in both splits
            seen.add(key)
            rows.append(candidate)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", rows[:n_train]), ("valid", rows[n_train:])):
        (out / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")


if __name__ == "__main__":
    main()
