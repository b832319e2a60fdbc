"""The query vector that ranks evidence: actors the query names are replaced by "someone" in half of it."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from agent_memory.context.semantic import ANONYMOUS, anonymised, named_actors


def candidate(actor: str | None) -> Any:
    """Only the actor of a candidate counts here."""
    return SimpleNamespace(actor=actor)


def test_actors_named_in_the_query_are_found_as_words_in_any_case() -> None:
    pool = [candidate("Nate"), candidate("Joanna"), candidate(None), candidate("Jo")]
    assert named_actors("what did nate think of Joanna's script?", pool) == ["Joanna", "Nate"]
    assert named_actors("What did Natalie say?", pool) == []  # a name inside a word is not named


def test_anonymised_replaces_each_name_and_its_possessive() -> None:
    query = "What did Jon say about Gina's progress with her store?"
    assert anonymised(query, ["Jon", "Gina"]) == f"What did {ANONYMOUS} say about {ANONYMOUS} progress with her store?"
    assert anonymised("Where did Nate’s turtles come from?", ["Nate"]) == f"Where did {ANONYMOUS} turtles come from?"
    assert anonymised("How are you?", []) == "How are you?"
