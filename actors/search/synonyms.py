"""Search synonyms an operator edits: groups of equivalent words or short phrases ("tv, television",
"sneakers, trainers, running shoes"), applied when a query is parsed, never indexed.

A query word (or run of words) found in a group matches any member of the group: the clause becomes
"any of these" where each multi-word member needs all its words. The index is not rebuilt when the
list changes; the readers load the new list (actors/search/actor.py) and the next query uses it.
Pure: no Ray, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

GROUPS_MAX = 2000
MEMBERS_MAX = 20  # phrases per group
PHRASE_WORDS_MAX = 4
PHRASE_CHARS_MAX = 60


class BadSynonyms(ValueError):
    """The synonym list cannot be used as given; the message says why (-> HTTP 422)."""


def normalize_group(members: Iterable[str]) -> list[str]:
    """A group as stored: members stripped, lower-cased, whitespace collapsed, duplicates dropped,
    in the order given. Raises BadSynonyms when it is not a usable group."""
    out: list[str] = []
    for m in members:
        if not isinstance(m, str):
            raise BadSynonyms("synonyms are strings")
        phrase = " ".join(m.lower().split())
        if not phrase:
            raise BadSynonyms("a synonym must not be blank")
        if len(phrase) > PHRASE_CHARS_MAX:
            raise BadSynonyms(
                f"a synonym is at most {PHRASE_CHARS_MAX} characters: {phrase[:30]!r}"
            )
        if len(phrase.split()) > PHRASE_WORDS_MAX:
            raise BadSynonyms(f"a synonym is at most {PHRASE_WORDS_MAX} words: {phrase!r}")
        if phrase not in out:
            out.append(phrase)
    if len(out) < 2:
        raise BadSynonyms("a synonym group needs at least two different words or phrases")
    if len(out) > MEMBERS_MAX:
        raise BadSynonyms(f"a synonym group has at most {MEMBERS_MAX} members")
    return out


@dataclass(frozen=True)
class Synonyms:
    """Groups compiled to the index's terms: `groups[g]` is a tuple of phrases, each a tuple of
    analysed (stemmed) words; `starts` maps a phrase's first word to (phrase, group) pairs, longest
    phrase first."""

    groups: tuple[tuple[tuple[str, ...], ...], ...] = ()
    starts: dict[str, list[tuple[tuple[str, ...], int]]] = field(default_factory=dict)
    source: tuple[tuple[str, ...], ...] = ()  # the groups as written (for status and tests)

    @classmethod
    def compile(
        cls, groups: Iterable[Iterable[str]], analyze: Callable[[str], list[str]]
    ) -> Synonyms:
        """`analyze` turns a phrase into the index's terms (the same analysis as query words)."""
        compiled: list[tuple[tuple[str, ...], ...]] = []
        source: list[tuple[str, ...]] = []
        starts: dict[str, list[tuple[tuple[str, ...], int]]] = {}
        for members in list(groups)[:GROUPS_MAX]:
            phrases = tuple(dict.fromkeys(t for t in (tuple(analyze(m)) for m in members) if t))
            if len(phrases) < 2:
                continue
            g = len(compiled)
            compiled.append(phrases)
            source.append(tuple(members))
            for phrase in phrases:
                starts.setdefault(phrase[0], []).append((phrase, g))
        for options in starts.values():
            options.sort(key=lambda x: -len(x[0]))
        return cls(tuple(compiled), starts, tuple(source))

    def match(self, words: list[str], i: int) -> tuple[int, int] | None:
        """(words covered, group) of the longest phrase of any group that starts at words[i]."""
        for phrase, g in self.starts.get(words[i], ()):
            if tuple(words[i : i + len(phrase)]) == phrase:
                return len(phrase), g
        return None

    def __len__(self) -> int:
        return len(self.groups)
