"""A small English synonym lexicon for easy-data-augmentation, usable offline.

Written for tunery and licensed with it (Apache-2.0): everyday words that a
fine-tuning prompt tends to contain, each with a few replacements that keep the
meaning in most contexts. WordNet would cover more, but needs an NLTK download and
often gives replacements that change the sense ("bank" -> "depository"). Add words
here when a data set needs them; every replacement list is read both ways by
`synonyms_of`, so "buy" also yields "purchase".
"""

from __future__ import annotations

from functools import cache

LEXICON: dict[str, tuple[str, ...]] = {
    # verbs
    "buy": ("purchase", "order", "get"),
    "want": ("need", "would like", "wish for"),
    "need": ("require", "want"),
    "send": ("ship", "deliver", "dispatch"),
    "deliver": ("ship", "bring", "send"),
    "make": ("create", "build", "produce"),
    "help": ("assist", "support", "aid"),
    "show": ("display", "present", "reveal"),
    "tell": ("inform", "let know", "notify"),
    "ask": ("request", "inquire", "query"),
    "answer": ("reply", "respond"),
    "find": ("locate", "discover", "look up"),
    "give": ("provide", "hand", "offer"),
    "get": ("obtain", "receive", "fetch"),
    "use": ("employ", "utilise", "apply"),
    "start": ("begin", "launch", "commence"),
    "stop": ("halt", "end", "cease"),
    "finish": ("complete", "end", "conclude"),
    "change": ("alter", "modify", "adjust"),
    "fix": ("repair", "correct", "mend"),
    "check": ("verify", "inspect", "examine"),
    "choose": ("pick", "select", "opt for"),
    "explain": ("describe", "clarify", "spell out"),
    "write": ("compose", "draft", "pen"),
    "read": ("study", "look through", "peruse"),
    "think": ("believe", "reckon", "suppose"),
    "try": ("attempt", "test", "have a go at"),
    "keep": ("retain", "hold", "preserve"),
    "remove": ("delete", "take out", "eliminate"),
    "add": ("include", "append", "insert"),
    "cancel": ("call off", "revoke", "annul"),
    "return": ("send back", "give back"),
    "arrive": ("come", "turn up", "reach"),
    "leave": ("depart", "go", "exit"),
    "like": ("enjoy", "appreciate", "fancy"),
    "says": ("states", "writes", "mentions"),
    "wants": ("needs", "would like", "requests"),
    "orders": ("buys", "requests", "purchases"),
    # nouns
    "order": ("purchase", "request"),
    "customer": ("client", "buyer", "shopper"),
    "city": ("town", "municipality"),
    "shop": ("store", "outlet"),
    "price": ("cost", "charge", "fee"),
    "delivery": ("shipment", "shipping", "dispatch"),
    "package": ("parcel", "packet"),
    "box": ("carton", "case"),
    "boxes": ("cartons", "cases"),
    "bag": ("sack", "pouch"),
    "bags": ("sacks", "pouches"),
    "bottle": ("flask", "jar"),
    "bottles": ("flasks", "jars"),
    "problem": ("issue", "trouble", "difficulty"),
    "question": ("query", "inquiry"),
    "answer_noun": ("reply", "response"),
    "car": ("vehicle", "automobile"),
    "house": ("home", "residence", "dwelling"),
    "job": ("work", "position", "role"),
    "task": ("job", "assignment", "chore"),
    "idea": ("notion", "thought", "concept"),
    "way": ("method", "manner", "approach"),
    "mistake": ("error", "fault", "slip"),
    "result": ("outcome", "consequence"),
    "goal": ("aim", "objective", "target"),
    "friend": ("companion", "pal", "mate"),
    "child": ("kid", "youngster"),
    "children": ("kids", "youngsters"),
    "money": ("cash", "funds"),
    "trip": ("journey", "voyage", "outing"),
    "road": ("street", "route"),
    "store": ("shop", "outlet"),
    "meal": ("dish", "food"),
    "picture": ("image", "photo", "photograph"),
    "story": ("tale", "account", "narrative"),
    "list": ("inventory", "register", "catalogue"),
    "summary": ("overview", "synopsis", "recap"),
    "text": ("passage", "wording"),
    # adjectives and adverbs
    "big": ("large", "huge", "sizeable"),
    "large": ("big", "sizeable"),
    "small": ("little", "tiny", "compact"),
    "little": ("small", "slight"),
    "fast": ("quick", "rapid", "speedy"),
    "quick": ("fast", "rapid", "swift"),
    "slow": ("sluggish", "unhurried"),
    "good": ("fine", "great", "decent"),
    "great": ("excellent", "superb", "terrific"),
    "bad": ("poor", "awful", "terrible"),
    "happy": ("glad", "pleased", "cheerful"),
    "sad": ("unhappy", "sorrowful", "down"),
    "angry": ("annoyed", "furious", "cross"),
    "easy": ("simple", "straightforward", "effortless"),
    "hard": ("difficult", "tough", "challenging"),
    "difficult": ("hard", "tough", "tricky"),
    "important": ("significant", "crucial", "key"),
    "new": ("fresh", "recent", "novel"),
    "old": ("aged", "former", "previous"),
    "cheap": ("inexpensive", "affordable", "low-cost"),
    "expensive": ("costly", "pricey", "dear"),
    "beautiful": ("lovely", "gorgeous", "pretty"),
    "smart": ("clever", "bright", "intelligent"),
    "strange": ("odd", "weird", "unusual"),
    "correct": ("right", "accurate", "exact"),
    "wrong": ("incorrect", "mistaken", "false"),
    "short": ("brief", "concise"),
    "long": ("lengthy", "extended"),
    "whole": ("entire", "complete", "full"),
    "quickly": ("rapidly", "swiftly", "fast"),
    "slowly": ("gradually", "unhurriedly"),
    "really": ("truly", "genuinely", "very"),
    "very": ("really", "extremely", "highly"),
    "often": ("frequently", "regularly", "commonly"),
    "maybe": ("perhaps", "possibly"),
    "soon": ("shortly", "before long"),
    "also": ("too", "as well", "additionally"),
    "please": ("kindly",),
    "thanks": ("thank you", "cheers", "many thanks"),
    "hello": ("hi", "hey", "greetings"),
    "about": ("regarding", "concerning", "on"),
}


@cache
def _index() -> dict[str, tuple[str, ...]]:
    both_ways: dict[str, list[str]] = {}
    for word, replacements in LEXICON.items():
        word = word.removesuffix("_noun")
        for replacement in replacements:
            both_ways.setdefault(word, []).append(replacement)
            if " " not in replacement:
                both_ways.setdefault(replacement, []).append(word)
    return {word: tuple(dict.fromkeys(r for r in found if r != word)) for word, found in both_ways.items()}


def synonyms_of(word: str) -> tuple[str, ...]:
    """Replacements for a lower-case word; empty when the lexicon has none."""
    return _index().get(word, ())
