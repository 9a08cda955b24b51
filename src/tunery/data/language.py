"""A coarse guess at the language of a row, for the language-mix finding.

    guess_language("Where is the station, please?")   # "en"
    guess_language("Где вокзал?")                      # "cyrillic"

Written here rather than taken from langdetect or fastText: the report only needs the
mix of a data set, not a verdict on each row; langdetect is random unless seeded and
fastText's model is 126 MB. Non-Latin scripts are named by script (Japanese and Korean
by their own scripts); Latin text is scored against the most frequent function words of
eight languages, and a row with fewer than two hits is "unknown" rather than a guess.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

STOPWORDS = {  # the most frequent function words, space-separated
    "en": "the and of to is in that it for you with are this be on not have what was can your how do my me we at by from",
    "es": "el la de que y en los las un una es por con para del se no lo como pero más está",
    "fr": "le la les de des et est un une que en du pour dans ce qui pas sur avec je vous",
    "de": "der die das und ist nicht ein eine zu den mit sich des auf für im dem ich sie es",
    "it": "il lo la di che e è un una per non con del della sono gli le si ho questo",
    "pt": "o a os as de que e do da em um uma para com não é por mais se no na",
    "nl": "de het een en van is dat niet ik je op te zijn met voor er maar ook",
    "sv": "och att det som är på en av för med till den har jag inte om ett var",
}
MIN_HITS = 2
WORD = re.compile(r"[^\W\d_]+")
ADDRESSES = re.compile(r"\S+@\S+|https?://\S+|www\.\S+")  # "com", "www" are no language's words


def guess_language(text: str) -> str:
    """An ISO 639-1 code for Latin-script languages, a script name otherwise, or "unknown"."""
    script = _main_script(text)
    if script != "latin":
        return script
    words = Counter(w.casefold() for w in WORD.findall(ADDRESSES.sub(" ", text)))
    scores = {lang: sum(words[w] for w in stopwords.split()) for lang, stopwords in STOPWORDS.items()}
    best = max(scores, key=lambda lang: scores[lang])
    return best if scores[best] >= MIN_HITS else "unknown"


def _main_script(text: str) -> str:
    counts: Counter[str] = Counter()
    for char in text:
        if char.isalpha():
            counts[_script(char)] += 1
    if not counts:
        return "unknown"
    if counts["hiragana-katakana"]:
        return "ja"
    return counts.most_common(1)[0][0]


def _script(char: str) -> str:
    name = unicodedata.name(char, "")
    for prefix, script in (
        ("LATIN", "latin"),
        ("CYRILLIC", "cyrillic"),
        ("GREEK", "greek"),
        ("ARABIC", "arabic"),
        ("HEBREW", "hebrew"),
        ("DEVANAGARI", "devanagari"),
        ("HANGUL", "ko"),
        ("HIRAGANA", "hiragana-katakana"),
        ("KATAKANA", "hiragana-katakana"),
        ("CJK", "zh"),
        ("THAI", "th"),
    ):
        if name.startswith(prefix):
            return script
    return "other"
