"""What a generation asks for and what it returns: the engine's public types, free of OpenVINO,
so the web tier, the drafting layer and test doubles share them."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Iterator

from copilot.engine.errors import EngineError, InvalidRequest

DEFAULT_MAX_NEW_TOKENS = 256
MAX_NEW_TOKENS_LIMIT = 4096


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
        if not isinstance(self.max_new_tokens, int) or not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
            raise InvalidRequest(f"'max_new_tokens' must be an integer from 1 to {MAX_NEW_TOKENS_LIMIT}")
        if not isinstance(self.temperature, (int, float)) or not 0 <= self.temperature <= 2:
            raise InvalidRequest("'temperature' must be between 0 and 2")
        if not isinstance(self.stop, list) or not all(isinstance(s, str) and s for s in self.stop):
            raise InvalidRequest("'stop' must be a list of non-empty strings")
        if (not isinstance(self.repetition_penalty, (int, float)) or isinstance(self.repetition_penalty, bool)
                or not 1.0 <= self.repetition_penalty <= 2.0):
            raise InvalidRequest("'repetition_penalty' must be between 1.0 and 2.0")


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
