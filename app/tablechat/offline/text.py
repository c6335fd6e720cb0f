"""Generic English for the offline engine: tokens, plurals, edit distance, a small lexicon.

Nothing here knows a schema: the words are the ones any analytical question uses (aggregates,
comparisons, dates, ordering). Schema names and values are matched in ``index.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# --- tokens -----------------------------------------------------------------------------------
_QUOTE_RE = re.compile(
    r"``\s*(?P<q1>[^`']+?)\s*''"
    r"|\"(?P<q2>[^\"]+)\""
    r"|“(?P<q3>[^”]+)”"
    r"|(?<![A-Za-z0-9])'(?P<q4>[^']+)'(?![A-Za-z0-9])"
    r"|‘(?P<q5>[^’]+)’"
)
_TOKEN_RE = re.compile(
    r"(?P<num>[$€£]?\d+(?:,\d{3})+(?:\.\d+)?%?|[$€£]?\d+(?:\.\d+)?%?|\.\d+%?)"
    r"|(?P<word>[A-Za-z][A-Za-z0-9]*(?:'[a-z]+)?)"
    r"|(?P<punct>[,;?!()]|\.(?=\s|$))"
)


@dataclass(slots=True)
class Token:
    text: str  # as typed
    norm: str  # lower case
    stem: str  # singular, lower case
    kind: str  # "word", "number", "quoted", "punct"
    value: float | None = None  # for numbers
    percent: bool = False
    money: bool = False


# Comparison symbols read as the words they stand for: "> 4.5" is "more than 4.5", never
# "4.5" (issue 12: the symbol was dropped and the number became an equality).
_SYMBOLS = ((">=", " at least "), ("=>", " at least "), ("≥", " at least "),
            ("<=", " at most "), ("=<", " at most "), ("≤", " at most "),
            ("<>", " not equal to "), ("!=", " not equal to "), ("≠", " not equal to "),
            (">", " more than "), ("<", " less than "), ("==", " equal to "),
            ("=", " equal to "))
# Any other symbol is a word the engine does not understand, so it cannot vanish silently.
_OTHER_SYMBOL_RE = re.compile(r"[+*/^&|~@#\\=<>]")


def _spell_symbols(text: str) -> str:
    for sym, words in _SYMBOLS:
        text = text.replace(sym, words)
    return text


def tokenize(text: str) -> list[Token]:
    """Words, numbers, quoted strings (kept whole) and list punctuation."""
    tokens: list[Token] = []
    pos = 0
    for match in _QUOTE_RE.finditer(text):
        tokens.extend(_plain_tokens(text[pos:match.start()]))
        inner = next(g for g in match.groups() if g is not None).strip()
        if inner:
            tokens.append(Token(inner, inner.lower(), inner.lower(), "quoted"))
        pos = match.end()
    tokens.extend(_plain_tokens(text[pos:]))
    return tokens


def _plain_tokens(text: str) -> list[Token]:
    out: list[Token] = []
    text = _spell_symbols(text)
    for sym in _OTHER_SYMBOL_RE.findall(text):
        out.append(Token(sym, sym, sym, "word"))  # left over: reported as not understood
    text = _OTHER_SYMBOL_RE.sub(" ", text)
    for m in _TOKEN_RE.finditer(text):
        if m.group("num"):
            raw = m.group("num")
            clean = raw.strip("$€£%").replace(",", "")
            try:
                value = float(clean)
            except ValueError:
                continue
            out.append(Token(raw, clean, clean, "number", value, raw.endswith("%"),
                             raw[0] in "$€£"))
        elif m.group("word"):
            word = m.group("word")
            low = word.lower()
            if low.endswith("'s"):
                low = low[:-2]
            out.append(Token(word, low, stem(low), "word"))
        else:
            out.append(Token(m.group("punct"), m.group("punct"), m.group("punct"), "punct"))
    return out


# --- stems ------------------------------------------------------------------------------------
_IRREGULAR = {
    "people": "person", "men": "man", "women": "woman", "children": "child", "mice": "mouse",
    "feet": "foot", "teeth": "tooth", "geese": "goose", "data": "data", "criteria": "criterion",
    "indices": "index", "analyses": "analysis", "series": "series", "species": "species",
    "news": "news", "staff": "staff", "media": "media", "status": "status", "statuses": "status",
    "address": "address", "addresses": "address", "business": "business", "boss": "boss",
    "class": "class", "classes": "class", "gas": "gas", "bus": "bus", "buses": "bus",
    "this": "this", "is": "is", "was": "was", "has": "has", "does": "does", "as": "as",
    "us": "us", "its": "its", "yes": "yes", "always": "always", "less": "less",
    "plus": "plus", "campus": "campus", "virus": "virus", "thesis": "thesis",
    "lives": "live", "wives": "wife", "ids": "id", "knives": "knife", "leaves": "leaf",
    "shelves": "shelf",
}


def stem(word: str) -> str:
    """Singular form of an English noun (plural rules only; verbs are left alone)."""
    w = word.lower()
    if w in _IRREGULAR:
        return _IRREGULAR[w]
    if len(w) <= 3 or not w.isalpha():
        return w
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith(("sses", "xes", "ches", "shes", "zzes")):
        return w[:-2]
    if w.endswith(("ss", "us", "is", "ous")):
        return w
    if w.endswith("s"):
        return w[:-1]
    return w


def root(word: str) -> str:
    """A looser key than :func:`stem`: also drops -ed/-ing/-er/-ion endings (signed → sign)."""
    w = stem(word)
    for suffix in ("ations", "ation", "ing", "ed", "ion", "er", "e"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)]
    return w


def split_identifier(name: str) -> list[str]:
    """``Song_release_year`` → song release year; ``petType`` → pet type; ``GNPOld`` → gnp old."""
    parts = re.split(r"[_\W]+", name)
    words: list[str] = []
    for part in parts:
        if not part:
            continue
        for piece in re.findall(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+", part):
            words.append(piece.lower())
    return words


def within_one_edit(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ by at most one insertion, deletion, substitution or
    swap of neighbours."""
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    if la == lb:
        diff = [i for i in range(la) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return (len(diff) == 2 and diff[1] == diff[0] + 1
                and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    if la > lb:
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1:]


def edit_distance(a: str, b: str, limit: int = 2) -> int:
    """Levenshtein distance, stopping early above ``limit`` (returns limit + 1 then)."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        best = i
        for j, cb in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb))
            best = min(best, cur[j])
        if best > limit:
            return limit + 1
        prev = cur
    return prev[-1]


def similar(a: str, b: str) -> bool:
    """Typo tolerance scaled to length: exact below 5 letters, 1 edit up to 8, 2 beyond."""
    if a == b:
        return True
    n = min(len(a), len(b))
    if n < 5:
        return False
    if n <= 8:
        return within_one_edit(a, b)
    return edit_distance(a, b, 2) <= 2


# --- lexicon ----------------------------------------------------------------------------------
# Words that carry no meaning for the query (question words, auxiliaries, pronouns, politeness).
STOPWORDS = frozenset([
    "a", "an", "the", "of", "in", "on", "at", "to", "from", "for", "with", "and", "or", "by",
    "as", "is", "are", "was", "were", "be", "been", "being", "am", "do", "does", "did", "done",
    "doing", "have", "has", "had", "having", "what", "what's", "whats", "which", "who", "whom",
    "whose", "where", "when", "how", "that", "this", "these", "those", "there", "here", "it",
    "its", "they", "them", "their", "theirs", "we", "our", "ours", "us", "you", "your", "yours",
    "i", "me", "my", "mine", "he", "she", "his", "her", "him", "all", "any", "some", "every",
    "each", "please", "show", "list", "give", "tell", "find", "get", "display", "return",
    "provide", "see", "know", "want", "need", "let", "lets", "can", "could", "would", "should",
    "will", "shall", "may", "might", "must", "about", "into", "onto", "than", "then", "so",
    "just", "also", "either", "currently", "ever", "yet", "still", "already", "so",
    "far", "now", "today", "one's", "someone", "something", "anything", "everything", "whether",
    "if", "s"
])
# Words after which a grouping word means "all of them" ("across all players").
ALL_WORDS = frozenset(["all", "whole", "entire", "any"])

# Generic nouns and verbs that restate "rows of a table" without adding a condition.
FILLER = frozenset([
    "data", "database", "table", "tables", "record", "records", "row", "rows", "entry",
    "entries", "info", "information", "detail", "details", "value", "values", "item", "items",
    "thing", "things", "result", "results", "kind", "kinds", "type", "types", "sort", "listed",
    "recorded", "stored", "kept", "registered", "exist", "exists", "existing", "available",
    "total", "overall", "altogether", "together", "combined", "whole", "entire", "name",
    "names", "number", "numbers", "amount", "amounts", "count", "counts", "figure", "figures",
    "stat", "stats", "statistic", "statistics", "summary", "breakdown", "also", "including",
    "along", "respectively", "corresponding", "associated", "related", "their", "its", "own",
    "various", "different", "distinct", "unique", "overall", "happen", "happened", "happens",
    "occur", "occurred", "take", "took", "taken", "make", "made", "place", "placed", "come",
    "came", "comes", "coming", "originate", "belong", "belongs", "belonging", "located",
    "locate", "live", "lives", "living", "reside", "based", "being", "got", "get", "gets",
    "receive", "received", "named", "called", "titled", "break", "down", "split", "broken",
    "use", "used", "using", "uses", "involve", "involved", "up",
    "during", "ever"
])
# Words that name an operation on values (an aggregate, a ratio, a statistic): never a data
# value unless quoted, never an echo of a column name ("ratio" is not "rating").
OPERATOR_WORDS = frozenset([
    "average", "averages", "avg", "mean", "median", "mode", "total", "totals", "sum", "sums",
    "maximum", "minimum", "max", "min", "ratio", "ratios", "proportion", "proportions",
    "percentage", "percentages", "percent", "share", "fraction", "rate", "rates", "variance",
    "deviation", "stddev", "correlation", "difference", "growth", "change", "per", "divided",
])
# Verbs of trade that restate a measure ("units sold", "revenue customers bring in").
SOFT_VERBS = frozenset([
    "sell", "sells", "sold", "selling", "buy", "buys", "bought", "buying", "purchase",
    "purchased", "purchases", "spend", "spends", "spent", "spending", "pay", "pays", "paid",
    "paying", "earn", "earns", "earned", "bring", "brings", "brought", "generate", "generated",
    "generates", "make", "makes", "made", "cost", "costs", "have", "has", "chain", "company",
    "business", "firm", "sign", "signed", "up"
])

AGG_WORDS: dict[str, str] = {
    "average": "avg", "avg": "avg", "mean": "avg",
    "total": "sum", "sum": "sum",
    "maximum": "max", "max": "max", "highest": "max", "largest": "max", "biggest": "max",
    "greatest": "max", "top": "max", "most": "max", "longest": "max", "latest": "max",
    "newest": "max", "last": "max", "best": "max", "peak": "max",
    "minimum": "min", "min": "min", "lowest": "min", "smallest": "min", "least": "min",
    "fewest": "min", "shortest": "min", "earliest": "min", "first": "min", "worst": "min",
}
# Superlative adjectives that name the property they rank by (generic English).
PROPERTY_SUPERLATIVES: dict[str, tuple[str, tuple[str, ...]]] = {
    "oldest": ("max", ("age",)), "youngest": ("min", ("age",)),
    "eldest": ("max", ("age",)),
    "tallest": ("max", ("height",)), "shortest": ("min", ("height", "length", "duration")),
    "heaviest": ("max", ("weight",)), "lightest": ("min", ("weight",)),
    "cheapest": ("min", ("price", "cost")), "priciest": ("max", ("price", "cost")),
    "expensive": ("max", ("price", "cost")),
    "richest": ("max", ("net", "worth", "wealth", "earning", "income")),
    "longest": ("max", ("length", "duration")),
    "fastest": ("max", ("speed",)), "slowest": ("min", ("speed",)),
    "recent": ("max", ("date", "time", "year")),
    "newest": ("max", ("date", "time", "year")), "latest": ("max", ("date", "time", "year")),
    "earliest": ("min", ("date", "time", "year")),
}
# Comparative adjectives: (operator, properties).
PROPERTY_COMPARATIVES: dict[str, tuple[str, tuple[str, ...]]] = {
    "older": (">", ("age",)), "younger": ("<", ("age",)), "taller": (">", ("height",)),
    "shorter": ("<", ("height", "length")), "heavier": (">", ("weight",)),
    "lighter": ("<", ("weight",)), "cheaper": ("<", ("price", "cost")),
    "pricier": (">", ("price", "cost")), "longer": (">", ("length", "duration")),
    "richer": (">", ("net", "worth")), "earlier": ("<", ("date", "year")),
    "later": (">", ("date", "year")),
}
# Comparison phrases (lower case, space separated) → operator.
COMPARISONS: dict[str, str] = {
    "more than": ">", "greater than": ">", "larger than": ">", "bigger than": ">",
    "higher than": ">", "over": ">", "above": ">", "exceeding": ">", "exceeds": ">",
    "exceed": ">", "after": ">", "later than": ">", "older than": ">", "taller than": ">",
    "heavier than": ">", "longer than": ">", "beyond": ">", "more expensive than": ">",
    "less than": "<", "fewer than": "<", "smaller than": "<", "lower than": "<",
    "under": "<", "below": "<", "before": "<", "earlier than": "<", "younger than": "<",
    "shorter than": "<", "lighter than": "<", "cheaper than": "<", "prior to": "<",
    "at least": ">=", "no less than": ">=", "not less than": ">=", "or more": ">=+",
    "or above": ">=+", "or higher": ">=+", "or greater": ">=+", "or over": ">=+",
    "or later": ">=+", "or after": ">=+", "and above": ">=+", "and over": ">=+",
    "and up": ">=+", "and later": ">=+", "since": ">=", "starting from": ">=",
    "at most": "<=", "no more than": "<=", "not more than": "<=", "up to": "<=",
    "or less": "<=+", "or fewer": "<=+", "or below": "<=+", "or lower": "<=+",
    "or under": "<=+", "or earlier": "<=+", "or before": "<=+", "and below": "<=+",
    "and under": "<=+", "no later than": "<=", "not above": "<=", "not higher than": "<=",
    "equal to": "=", "equals": "=", "exactly": "=",
}
NEGATIONS = frozenset({"not", "no", "never", "without", "except", "excluding", "isn't",
                       "aren't", "don't", "doesn't", "didn't", "wasn't", "weren't", "nor",
                       "neither"})
COUNT_PHRASES = ("how many", "number of", "count of", "count", "total number of",
                 "how much of", "quantity of", "counts of", "numbers of", "count the number of")
GROUP_PHRASES = ("for each", "for every", "in each", "of each", "per", "by", "each", "every",
                 "broken down by", "break down by", "breakdown by", "grouped by", "group by",
                 "split by", "across", "for all the different", "for different", "by each",
                 "for each of the")
ORDER_PHRASES = ("ordered by", "order by", "sorted by", "sort by", "sort", "rank by",
                 "ranked by", "in order of", "order of", "ordered", "sorted", "arranged by",
                 "in ascending order of", "in descending order of", "ascending order of",
                 "descending order of", "in ascending order by", "in descending order by")
DESC_WORDS = frozenset({"descending", "desc", "decreasing", "reverse", "reversed",
                        "highest", "largest", "biggest", "most"})
ASC_WORDS = frozenset({"ascending", "asc", "increasing", "alphabetical", "alphabetically",
                       "lexicographical", "lexicographic", "lowest", "smallest"})
DISTINCT_WORDS = frozenset({"distinct", "different", "unique"})
MODE_WORDS = frozenset({"common", "frequent", "often", "frequently", "commonly"})

NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15,
    "twenty": 20, "thirty": 30, "fifty": 50, "hundred": 100, "once": 1, "twice": 2,
    "thrice": 3, "single": 1, "dozen": 12,
}
MONTHS = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4,
    "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8,
    "september": 9, "sep": 9, "sept": 9, "october": 10, "oct": 10, "november": 11, "nov": 11,
    "december": 12, "dec": 12,
}
ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1, "1st": 1, "2nd": 2,
            "3rd": 3, "4th": 4}
TIME_UNITS = {"day": "day", "days": "day", "week": "week", "weeks": "week", "month": "month",
              "months": "month", "quarter": "quarter", "quarters": "quarter", "year": "year",
              "years": "year", "daily": "day", "weekly": "week", "monthly": "month",
              "quarterly": "quarter", "yearly": "year", "annually": "year", "annual": "year"}
# Common abbreviations in column names.
ABBREVIATIONS = {
    "num": "number", "no": "number", "nbr": "number", "qty": "quantity", "amt": "amount",
    "desc": "description", "dept": "department", "addr": "address", "yr": "year",
    "dob": "birth", "pct": "percentage", "pop": "population", "cnt": "count", "avg": "average",
    "tel": "phone", "mgr": "manager", "emp": "employee", "cust": "customer", "prod": "product",
    "cat": "category", "org": "organization", "info": "information", "id": "id",
    "dt": "date", "ts": "time", "lang": "language", "std": "student", "stu": "student",
    "fname": "first name", "lname": "last name",
}
