"""Filters: does Go's regexp.Compile accept the pattern, and with how many groups?
Our pipeline.katib.goregex must say the same for generated and hand-picked patterns."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from pipeline.katib import goregex
from tests.oracle.conftest import hypothesis_settings

pytestmark = pytest.mark.process

TOKENS = [
    "a",
    "b",
    "=",
    " ",
    ".",
    "*",
    "+",
    "?",
    "|",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "^",
    "$",
    "-",
    ",",
    "1",
    "3",
    "\\",
    "\\w",
    "\\d",
    "\\s",
    "\\S",
    "\\b",
    "\\B",
    "\\z",
    "\\Z",
    "\\A",
    "\\pL",
    "\\p{Greek}",
    "\\PN",
    "\\C",
    "\\Q",
    "\\E",
    "(?:",
    "(?i)",
    "(?U)",
    "(?s)",
    "(?m)",
    "(?P<n>",
    "(?<n>",
    "(?=",
    "(?!",
    "(?<=",
    "\\1",
    "*+",
    "++",
    "{2}",
    "{2,}",
    "{1,3}",
    "{1001}",
    "[^",
    "[:alpha:]",
    "[[:digit:]]",
    "\\x41",
    "\\x{263a}",
    "\\0",
    "\\07",
    "\\v",
    "\\e",
    "\\a",
    "\\f",
    "\\t",
    "\\n",
    "\\r",
    ";",
    "é",
    "\\.",
    "\\-",
]

HAND_PICKED = [
    r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)",  # Katib's default
    r"(?=x)(a)(b)",
    r"(?<=x)(a)(b)",
    r"(a)\1(b)",
    r"(a)(b)\z",
    r"(\pL+)=(\d+)",
    r"(a)(b)\Z",
    r"\C(a)(b)",
    r"(a++)(b)",
    r"\Q(a)\E(b)(c)",
    r"(?P<name>a)(b)",
    r"(?<name>a)(b)",
    r"(a){1000}(b)",
    r"(a){1001}(b)",
    r"([[:alpha:]]+)=([[:digit:]]+)",
    r"(\w+)\s*:\s*(\S+)",
    r"(?i)(LOSS)=(\d)",
    r"(a)(b",
    r"(a))(b)",
    r"(\x{263a})(b)",
    r"(\8)(a)",
    r"(a)(b)\v",
    r"(?#comment)(a)(b)",
    r"(a)(b)*?",
    r"(a)(b)**",
    r"(\e)(b)",
]


def _ours(pattern: str) -> tuple[bool, int | None]:
    try:
        return True, goregex.compile_go(pattern).compiled.groups
    except goregex.GoRegexError:
        return False, None


def _theirs(answer: dict) -> tuple[bool, int | None]:
    return answer["valid"], answer.get("groups")


def test_hand_picked_patterns_compile_as_in_go(oracle):
    answers = oracle.ask_many([{"op": "regex", "pattern": p} for p in HAND_PICKED])
    differ = [(p, _ours(p), _theirs(a)) for p, a in zip(HAND_PICKED, answers, strict=True) if _ours(p) != _theirs(a)]
    assert not differ, differ


@hypothesis_settings(1000)
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=8).map("".join))
def test_generated_patterns_compile_as_in_go(oracle, pattern):
    assert _ours(pattern) == _theirs(oracle.ask("regex", pattern=pattern)), pattern
