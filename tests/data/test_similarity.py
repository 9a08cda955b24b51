"""Shingle similarity: one definition of "alike" for near duplicates, leakage and copied answers."""

from __future__ import annotations

import pytest

from tunery.data import check, report
from tunery.data.similarity import SHINGLE, connected_groups, jaccard, shingle_hashes, shingles


def test_jaccard_counts_shared_five_character_windows():
    # "abcdef" has {abcde, bcdef}, "abcdeg" has {abcde, bcdeg}: one shared of three.
    assert jaccard("abcdef", "abcdeg") == pytest.approx(1 / 3)
    assert jaccard("where is the station", "where is the station") == 1.0
    assert jaccard("aaaaaaa", "bbbbbbb") == 0.0


def test_texts_shorter_than_a_shingle_are_like_nothing():
    assert shingles("abcd") == set()
    assert jaccard("abcd", "abcd") == 0.0
    assert jaccard("abcd", "abcdefgh") == 0.0


@pytest.mark.parametrize(
    "texts", [["hello world", "hello there world"], ["a" * SHINGLE, "abcabcabcabc", "ünïcödé text ✓"]]
)
def test_minhash_hashes_exactly_the_windows_jaccard_compares(texts):
    hashes, starts = shingle_hashes(texts)
    ends = [*starts[1:], len(hashes)]
    for text, start, end in zip(texts, starts, ends, strict=True):
        assert end - start == len(text) - SHINGLE + 1  # one hash per window, none across texts
        assert len(set(hashes[start:end].tolist())) == len(shingles(text))


def test_the_data_check_and_the_quality_report_share_one_similarity():
    assert check.jaccard is report.jaccard is jaccard
    assert not hasattr(check, "_shingle_hashes") and not hasattr(report, "_shingles")


def test_similar_pairs_join_into_groups():
    assert connected_groups([(9, 4), (4, 1), (3, 2)]) == [[1, 4, 9], [2, 3]]
