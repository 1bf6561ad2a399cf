"""A name spelt out by the caller, read into letters: "Alfa November November Alfa. Bravo Echo
Romeo Golf." → "Anna Berg".

Why spelling: Swedish names spoken over an 8 kHz line come out of Whisper as English words
("Anna Berg" → "Anna Burt", "Olle Berg" → "All Birds"), and even a human receptionist asks how
a name is spelt. Letter names are no better on the phone (measured: B, D, G, P, T and V are
confused with one another in most spelt names), which is why the agent asks for the spelling
alphabet, as radio operators and switchboards do; the words are far apart acoustically and the
live transcription of a spelling turn is constrained to them (`listen.SpellingDecoder`).

Read here, from text: the international (NATO) alphabet, the Swedish one, bare letters and
letter names, "double n", "B as in Bravo", "O with dots"/"umlaut" (Ö, Ä, Ü) and "A with a ring"
(Å). Parts of the name are separated by a full stop or semicolon (a pause, as Whisper writes
it) or by "surname"/"last name". Any other word means this was not a spelling (None): a
sentence is never turned into a name.
"""

from __future__ import annotations

import re

NATO: dict[str, str] = {
    "alfa": "a", "alpha": "a", "bravo": "b", "charlie": "c", "delta": "d", "echo": "e",
    "foxtrot": "f", "golf": "g", "hotel": "h", "india": "i", "juliett": "j", "juliet": "j",
    "kilo": "k", "lima": "l", "mike": "m", "november": "n", "oscar": "o", "papa": "p",
    "quebec": "q", "romeo": "r", "sierra": "s", "tango": "t", "uniform": "u", "victor": "v",
    "whiskey": "w", "whisky": "w", "x-ray": "x", "xray": "x", "yankee": "y", "zulu": "z",
}  # fmt: skip
SWEDISH: dict[str, str] = {
    "adam": "a", "bertil": "b", "cesar": "c", "david": "d", "erik": "e", "filip": "f",
    "gustav": "g", "helge": "h", "ivar": "i", "johan": "j", "kalle": "k", "ludvig": "l",
    "martin": "m", "niklas": "n", "olof": "o", "petter": "p", "qvintus": "q", "rudolf": "r",
    "sigurd": "s", "tore": "t", "urban": "u", "viktor": "v", "wilhelm": "w", "xerxes": "x",
    "yngve": "y", "zäta": "z", "åke": "å", "ärlig": "ä", "östen": "ö",
}  # fmt: skip
LETTER_NAMES: dict[str, str] = {
    "ay": "a", "bee": "b", "cee": "c", "see": "c", "dee": "d", "ee": "e", "ef": "f", "eff": "f",
    "gee": "g", "aitch": "h", "jay": "j", "kay": "k", "el": "l", "ell": "l", "em": "m",
    "en": "n", "pee": "p", "cue": "q", "queue": "q", "ar": "r", "ess": "s", "tee": "t",
    "vee": "v", "ex": "x", "why": "y", "zed": "z", "zee": "z",
}  # fmt: skip
MODIFIERS: dict[str, dict[str, str]] = {
    # "O with dots", "A umlaut": the Swedish and German letters an English alphabet lacks.
    "with dots": {"o": "ö", "a": "ä", "u": "ü"},
    "with two dots": {"o": "ö", "a": "ä", "u": "ü"},
    "umlaut": {"o": "ö", "a": "ä", "u": "ü"},
    "with a ring": {"a": "å"},
    "with ring": {"a": "å"},
}
SEPARATORS = ("surname", "last name", "family name", "second name")
_FILLERS = {
    "it", "it's", "its", "is", "that's", "thats", "my", "name", "first", "spelled", "spelt",
    "and", "then", "the", "uh", "um", "er", "erm", "okay", "ok", "so", "sure", "yes", "yeah",
}  # fmt: skip
_WORD = re.compile(r"[a-zåäöü_']+(?:-[a-zåäöü]+)?|[.;]")


def looks_spelt(text: str) -> bool:
    """Three or more words of the international alphabet: the caller is spelling (a name
    of Swedish alphabet words, "Erik Johan", is not taken for one)."""
    return sum(1 for w in _WORD.findall(text.lower()) if w in NATO) >= 3


def letter_of(word: str) -> str | None:
    """The letter a spelling word (or a bare letter, or a letter's name) stands for."""
    w = word.lower()
    if len(w) == 1 and w.isalpha():
        return w
    return NATO.get(w) or SWEDISH.get(w) or LETTER_NAMES.get(w)


def spelled_name(text: str) -> str | None:
    """The name `text` spells ("Anna Berg"), or None if `text` is not a spelling."""
    t = text.lower().replace("\u2019", "'")
    for sep in SEPARATORS:
        t = re.sub(rf"\b{sep}\b", " ; ", t)
    for mod in sorted(MODIFIERS, key=len, reverse=True):
        t = re.sub(rf"\b{mod}\b", " " + mod.replace(" ", "_") + " ", t)
    tokens = _WORD.findall(t)
    parts: list[list[str]] = [[]]
    i = 0
    while i < len(tokens):
        if tokens[i] in {".", ";"}:
            if parts[-1]:
                parts.append([])
            i += 1
            continue
        used = _read(tokens, i, parts[-1])
        if used is None:
            return None
        i += used
    words = ["".join(p).strip("-") for p in parts if p]
    if not words or sum(len(w) for w in words) < 2:
        return None
    return " ".join(_capital(w) for w in words)


def _read(tokens: list[str], i: int, part: list[str]) -> int | None:  # noqa: PLR0911 - one per item form
    """Reads the spelling item at `tokens[i]` into `part`: the tokens it used, None if it is
    not one."""
    tok = tokens[i]
    modifier = MODIFIERS.get(tok.replace("_", " "))
    if modifier is not None:
        if not part or part[-1] not in modifier:
            return None  # "with dots" after nothing, or after a letter that takes none
        part[-1] = modifier[part[-1]]
        return 1
    if tok in {"dash", "hyphen"} and part:
        part.append("-")
        return 1
    if tok in {"double", "triple"} and i + 1 < len(tokens):
        letter = letter_of(tokens[i + 1])
        if letter is None:
            return None
        part.extend([letter] * (2 if tok == "double" else 3))
        return 2
    letter = letter_of(tok)
    if letter is not None:
        part.append(letter)
        # "B as in Bravo", "B for Bravo": the word confirms the letter, it adds none.
        if tokens[i + 1 : i + 3] == ["as", "in"]:
            return 4
        if i + 2 < len(tokens) and tokens[i + 1] in {"for", "like"}:
            return 3
        return 1
    return 1 if tok in _FILLERS else None


def _capital(word: str) -> str:
    return "-".join(p[:1].upper() + p[1:] for p in word.split("-"))
