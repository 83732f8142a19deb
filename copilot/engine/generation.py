"""What a generation asks for and what it returns: the engine's public types, free of OpenVINO,
so the web tier, the drafting layer and test doubles share them."""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, field
from typing import Iterator

from copilot.engine.errors import EngineError, InvalidRequest

DEFAULT_MAX_NEW_TOKENS = 256
MAX_NEW_TOKENS_LIMIT = 4096
MAX_TOP_K = 1_000_000  # beyond any vocabulary; keeps the value inside the engine's C integer types
MAX_SEED = 2**63 - 1
MAX_STOPS, MAX_STOP_CHARS = 32, 256


@dataclass
class GenerationRequest:
    prompt: str | None = None
    messages: list[dict] | None = None
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    repetition_penalty: float = 1.0

    def validate(self) -> None:
        """Every parameter in range and of its type, so that a bad request is a clear InvalidRequest
        (HTTP 400) and never an overflow or TypeError inside the engine."""
        if (self.prompt is None) == (self.messages is None):
            raise InvalidRequest("give exactly one of 'prompt' or 'messages'")
        if self.prompt is not None and (not isinstance(self.prompt, str) or not self.prompt.strip()):
            raise InvalidRequest("'prompt' must be a non-empty string")
        if self.messages is not None:
            if not isinstance(self.messages, list) or not self.messages:
                raise InvalidRequest("'messages' must be a non-empty list")
            for message in self.messages:
                if (not isinstance(message, dict) or message.get("role") not in {"system", "user", "assistant"}
                        or not isinstance(message.get("content"), str)):
                    raise InvalidRequest("each message needs 'role' (system|user|assistant) and string 'content'")
        _integer("max_new_tokens", self.max_new_tokens, 1, MAX_NEW_TOKENS_LIMIT)
        _number("temperature", self.temperature, 0.0, 2.0)
        _number("top_p", self.top_p, 0.0, 1.0, low_open=True)
        _integer("top_k", self.top_k, 0, MAX_TOP_K, "0 turns it off")
        if self.seed is not None:
            _integer("seed", self.seed, 0, MAX_SEED)
        if (not isinstance(self.stop, list) or len(self.stop) > MAX_STOPS
                or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in self.stop)):
            raise InvalidRequest(f"'stop' must be a list of at most {MAX_STOPS} non-empty strings of at most "
                                 f"{MAX_STOP_CHARS} characters")
        _number("repetition_penalty", self.repetition_penalty, 1.0, 2.0)


def _integer(name: str, value, low: int, high: int, note: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be an integer from {low} to {high:,}" + (f" ({note})" if note else ""))


def _number(name: str, value, low: float, high: float, low_open: bool = False) -> None:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
          and (low < value if low_open else low <= value) and value <= high)
    if not ok:
        raise InvalidRequest(f"'{name}' must be a number {'above' if low_open else 'from'} {low:g} "
                             f"{'and at most' if low_open else 'to'} {high:g}")


@dataclass
class GenerationMetrics:
    prompt_tokens: int = 0
    generated_tokens: int = 0
    queue_wait_s: float = 0.0
    ttft_s: float = 0.0
    decode_tokens_per_s: float = 0.0
    total_s: float = 0.0
    prompt_lookup: bool = False

    def as_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass
class GenerationResult:
    text: str
    finish_reason: str  # "stop" (eos or stop string), "length", "cancelled"
    metrics: GenerationMetrics


class StreamingEngine:
    """What every engine offers on top of its ``stream`` (the OpenVINO engine, test doubles)."""

    def stream(self, request: GenerationRequest, cancel: threading.Event | None = None,
               wait_s: float = 0.0) -> Iterator[str | GenerationResult]:
        raise NotImplementedError

    def generate(self, request: GenerationRequest, cancel: threading.Event | None = None) -> GenerationResult:
        """The whole answer at once: the stream's final result."""
        for item in self.stream(request, cancel):
            if isinstance(item, GenerationResult):
                return item
        raise EngineError("generation ended without a result")
