"""Blend several data sets into one training set by shares or fixed row counts.

    parts = [MixPart("orders@2", share=0.8), MixPart("general", share=0.2)]
    mixed = mix_sources(parts, total=1000, seed=0)     # exactly 800 + 200 rows
    mixed.examples, mixed.recipe                       # the recipe is stored with the new version

How many rows each source gives (`plan_counts`):
- a fixed `count` is taken as is;
- `share`s must add up to 1 and split what is left of `total` after the counts, by
  largest remainder, so the counts are exact and sum to `total`;
- without `total`, shares alone give the largest mix in which no source repeats a row,
  and counts alone give their sum.
A source asked for more rows than it has is repeated whole, then sampled for the rest
(a replay share of a small set). The mix is shuffled with the seed; the same sources
and seed give the same file.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from tunery.data.types import Example


@dataclass(frozen=True)
class MixPart:
    source: str  # a file or a registered NAME[@VERSION]
    count: int | None = None
    share: float | None = None

    @classmethod
    def parse(cls, text: str) -> MixPart:
        """`"orders@2=0.8"` is a share, `"general=200"` a row count, `"general=25%"` a share."""
        source, sep, amount = text.rpartition("=")
        if not sep or not source:
            raise ValueError(f"'{text}' must look like SOURCE=SHARE (0.8, 80%) or SOURCE=ROWS (200)")
        if amount.endswith("%"):
            return cls(source, share=float(amount[:-1]) / 100)
        if "." in amount:
            return cls(source, share=float(amount))
        return cls(source, count=int(amount))


@dataclass
class Mixed:
    examples: list[Example]
    recipe: dict


def plan_counts(sizes: list[int], parts: list[MixPart], total: int | None = None) -> list[int]:
    """Rows to take from each source (see the module docstring)."""
    fixed = sum(p.count or 0 for p in parts)
    shares = {i: p.share for i, p in enumerate(parts) if p.share is not None}
    if any(p.count is not None and p.count < 0 for p in parts) or any(share < 0 for share in shares.values()):
        raise ValueError("counts and shares must not be negative")
    if shares and not math.isclose(sum(shares.values()), 1.0, abs_tol=1e-6):
        raise ValueError(f"shares add up to {sum(shares.values()):g}, not 1")
    if total is None:
        if shares and fixed:
            raise ValueError("mixing counts and shares needs a total")
        total = min(math.floor(sizes[i] / share) for i, share in shares.items() if share) if shares else fixed
    if total < fixed:
        raise ValueError(f"the fixed counts ({fixed}) exceed the total ({total})")
    counts = [p.count or 0 for p in parts]
    exact = {i: share * (total - fixed) for i, share in shares.items()}
    for i, value in exact.items():
        counts[i] = math.floor(value)
    short = total - sum(counts)
    for i in sorted(exact, key=lambda i: (-(exact[i] - counts[i]), i))[:short]:
        counts[i] += 1
    return counts


def take_rows(n_rows: int, count: int, rng: random.Random) -> list[int]:
    """`count` row indices out of `n_rows`: a sample without repeats, or whole copies plus a sample."""
    if n_rows == 0 and count:
        raise ValueError("cannot take rows from an empty source")
    copies, rest = divmod(count, n_rows) if n_rows else (0, 0)
    return list(range(n_rows)) * copies + sorted(rng.sample(range(n_rows), rest))


def mix_sources(parts: list[MixPart], total: int | None = None, seed: int = 0) -> Mixed:
    """Load each source (file or registered name), take its rows and shuffle them together."""
    from tunery.data.formats import load_checked
    from tunery.data.registry import resolve_data_path

    loaded, specs = [], []
    for part in parts:
        path, dataset = resolve_data_path(part.source)
        loaded.append(load_checked(path))
        specs.append(dataset)
    kinds = {e.kind for data in loaded for e in data.examples}
    if len(kinds) > 1:
        raise ValueError(f"cannot mix rows of different kinds ({', '.join(sorted(kinds))}) into one file")
    counts = plan_counts([len(data.examples) for data in loaded], parts, total)
    rng = random.Random(seed)
    examples = []
    for data, count in zip(loaded, counts, strict=True):
        examples += [data.examples[i] for i in take_rows(len(data.examples), count, rng)]
    rng.shuffle(examples)
    recipe = {
        "seed": seed,
        "total": sum(counts),
        "sources": [
            {
                "source": part.source,
                "dataset": spec,
                "content_hash": data.content_hash,
                "rows_available": len(data.examples),
                "share": part.share,
                "count": count,
            }
            for part, spec, data, count in zip(parts, specs, loaded, counts, strict=True)
        ],
    }
    return Mixed(examples, recipe)
