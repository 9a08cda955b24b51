"""How alike two texts are: 5-character shingles, their Jaccard similarity and MinHash over many texts.

    jaccard("where is the station", "where is the station?")      # 0.94
    signatures = minhash(texts)                                    # (len(texts), 48) uint64
    pairs = candidate_pairs(signatures)                            # {(i, j), ...} worth comparing
    connected_groups([(1, 4), (4, 9), (2, 3)])                     # [[1, 4, 9], [2, 3]]

One definition of a shingle (every SHINGLE-character window of a text; hashed to 64 bits
for MinHash) serves the near-duplicate groups of the data check, leakage in the quality
report and its copied-answer check, so "alike" means the same everywhere.

Written here rather than taken from a library (datasketch and friends would be a new
dependency for ~60 lines of numpy). MinHash has 48 hashes in 12 LSH bands of 4, which puts
a pair at Jaccard 0.85 in a shared bucket with probability > 0.9998; within a bucket each
text is paired only with the bucket's first one, which keeps the work linear on sets full
of one template. Texts shorter than SHINGLE characters have no shingle: their similarity
to anything is 0.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

SHINGLE = 5
BANDS, BAND_ROWS = 12, 4


def shingle_hashes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every SHINGLE-character window of each text, back to back, and where each text's start.

    Every text must have at least SHINGLE characters.
    """
    import numpy as np

    joined = "".join(texts).encode("utf-32-le", errors="surrogatepass")
    codes = np.frombuffer(joined, dtype=np.uint32).astype(np.uint64)
    n = len(codes) - SHINGLE + 1
    hashes = np.zeros(n, dtype=np.uint64)
    for offset in range(SHINGLE):  # polynomial hash of each window, wrapping mod 2**64
        hashes = hashes * np.uint64(1_000_003) + codes[offset : offset + n]
    lengths = np.array([len(t) for t in texts])
    ends = np.cumsum(lengths)[:-1]
    crossing = (ends[:, None] - np.arange(1, SHINGLE)[None, :]).ravel()  # windows spanning two texts
    keep = np.ones(n, dtype=bool)
    keep[crossing] = False
    counts = lengths - SHINGLE + 1
    return _mix(hashes[keep]), np.concatenate([[0], np.cumsum(counts)[:-1]])


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads the polynomial hash over all 64 bits."""
    import numpy as np

    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def shingles(text: str) -> set[str]:
    """Every SHINGLE-character window of `text`; none when it is shorter."""
    return {text[i : i + SHINGLE] for i in range(len(text) - SHINGLE + 1)}


def jaccard(left: str, right: str) -> float:
    """Jaccard similarity of the two texts' shingle sets; 0 when either is shorter than a shingle.

    Python sets rather than `shingle_hashes`: exact, and for one pair of row-sized texts
    about 6x faster than numpy's per-call overhead.
    """
    a, b = shingles(left), shingles(right)
    if not a or not b:
        return 0.0
    common = len(a & b)
    return common / (len(a) + len(b) - common)


def minhash(texts: list[str], chunk_chars: int = 1 << 22) -> np.ndarray:
    """(len(texts), BANDS * BAND_ROWS) MinHash signatures, with hashes h -> a*h + b mod 2**64."""
    import numpy as np

    rng = np.random.default_rng(0)  # fixed, so reports are reproducible
    n_hashes = BANDS * BAND_ROWS
    a = rng.integers(1, 2**63, n_hashes, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**63, n_hashes, dtype=np.uint64)
    signatures = np.empty((len(texts), n_hashes), dtype=np.uint64)
    start = 0
    while start < len(texts):  # chunks of about chunk_chars characters bound the memory used
        stop, size = start, 0
        while stop < len(texts) and (size == 0 or size + len(texts[stop]) <= chunk_chars):
            size, stop = size + len(texts[stop]), stop + 1
        hashes, offsets = shingle_hashes(texts[start:stop])
        for k in range(n_hashes):
            signatures[start:stop, k] = np.minimum.reduceat(hashes * a[k] + b[k], offsets)
        start = stop
    return signatures


def candidate_pairs(signatures: np.ndarray) -> set[tuple[int, int]]:
    """Index pairs sharing a band; each row is paired with the first row of its bucket."""
    import numpy as np

    pairs: set[tuple[int, int]] = set()
    weights = np.arange(1, 2 * BAND_ROWS, 2, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    for band in range(BANDS):
        keys = signatures[:, band * BAND_ROWS : (band + 1) * BAND_ROWS] @ weights
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]
        first = order[np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))]
        for i, j in zip(first[~starts].tolist(), order[~starts].tolist(), strict=True):
            pairs.add((min(i, j), max(i, j)))
    return pairs


def connected_groups(pairs: list[tuple[int, int]]) -> list[list[int]]:
    """The connected components of the pairs, each sorted, ordered by their first member."""
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        parent[root(a)] = root(b)
    groups: dict[int, list[int]] = defaultdict(list)
    for member in parent:
        groups[root(member)].append(member)
    return sorted((sorted(members) for members in groups.values()), key=lambda members: members[0])
