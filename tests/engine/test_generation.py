"""GenerationRequest.validate: every parameter checked for type and range before an engine sees it
(the issue: top_p "abc", top_k -5 and seed 2**80 reached the engine and answered 500)."""

from __future__ import annotations

import math

import pytest

from copilot.engine.errors import InvalidRequest
from copilot.engine.generation import GenerationRequest


@pytest.mark.parametrize("field, value", [
    ("top_p", "abc"), ("top_p", 0), ("top_p", 1.5), ("top_p", math.nan), ("top_p", True),
    ("top_k", -5), ("top_k", 2.5), ("top_k", 10**7), ("top_k", True),
    ("seed", 2**80), ("seed", -1), ("seed", "7"), ("seed", 1.0),
    ("temperature", math.inf), ("temperature", "hot"), ("temperature", False),
    ("max_new_tokens", True), ("max_new_tokens", 8.0),
    ("repetition_penalty", math.nan),
    ("stop", "."), ("stop", ["x"] * 33), ("stop", ["y" * 257]), ("stop", [None]),
])
def test_out_of_range_or_mistyped_parameters_are_invalid_requests(field, value):
    with pytest.raises(InvalidRequest, match=field):
        GenerationRequest(prompt="Define sepsis.", **{field: value}).validate()


def test_the_edges_of_each_range_are_accepted():
    GenerationRequest(prompt="x", top_p=1.0, top_k=0, seed=0, temperature=0, max_new_tokens=1).validate()
    GenerationRequest(prompt="x", top_p=1e-9, top_k=1_000_000, seed=2**63 - 1, temperature=2.0,
                      repetition_penalty=2.0, stop=["z" * 256] * 32).validate()
