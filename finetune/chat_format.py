"""Examples -> token ids with the model's own chat template, loss on the answer only.

The prompt (system + user turns and the assistant header) is rendered with the tokenizer's
chat template, then the full conversation; every token that starts before the answer gets
label -100, so training only teaches the model to write answers, never to reproduce
transcripts. Too-long pairs are shortened on the source side first (middle lines dropped),
because the note is what the model must learn to write.
"""

from __future__ import annotations

from dataclasses import dataclass

from finetune.prompts import Example, omitted_marker, shorten_lines

IGNORE_INDEX = -100


class ChatTemplateError(ValueError):
    pass


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    prompt_tokens: int
    answer_tokens: int
    truncated: str  # "" | "source" | "source+answer"


def _render(tokenizer, messages: list[dict], add_generation_prompt: bool) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError("the base model's tokenizer has no chat template; fine-tune an instruct/chat model")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def encode_messages(tokenizer, messages: list[dict]) -> Encoded:
    """Tokenise a conversation whose last message is the assistant's answer; label only that answer."""
    prompt = _render(tokenizer, messages[:-1], add_generation_prompt=True)
    full = _render(tokenizer, messages, add_generation_prompt=False)
    if not full.startswith(prompt):
        raise ChatTemplateError("the chat template renders the prompt differently with and without the answer; "
                                "answer-only labels cannot be placed")
    encoding = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoding["input_ids"])
    boundary = len(prompt)
    labels = [IGNORE_INDEX if start < boundary else token for token, (start, _) in zip(ids, encoding["offset_mapping"])]
    answer = sum(label != IGNORE_INDEX for label in labels)
    if answer == 0:
        raise ChatTemplateError("the answer produced no tokens")
    return Encoded(ids, labels, len(ids) - answer, answer, "")


def prompt_token_count(tokenizer, messages: list[dict]) -> int:
    prompt = _render(tokenizer, messages, add_generation_prompt=True)
    return len(tokenizer(prompt, add_special_tokens=False)["input_ids"])


def _shorten_chars(text: str, keep: int, language: str) -> str:
    """For sources whose single lines are too long to drop whole: keep characters from both ends."""
    if keep >= len(text):
        return text
    head, tail = text[: (keep + 1) // 2], text[len(text) - keep // 2:]
    dropped = text[len(head):len(text) - len(tail)].count("\n") + 1
    return f"{head}\n{omitted_marker(language, dropped)}\n{tail}"


def _largest_fitting(fits, upper: int) -> int | None:
    """Largest k in [0, upper] with fits(k), assuming fits is monotone; None when even 0 does not fit."""
    if not fits(0):
        return None
    low, high = 0, upper
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def fit_source(tokenizer, example: Example, budget: int) -> tuple[str, bool]:
    """The example's source text shortened until its prompt takes at most ``budget`` tokens."""
    def prompt_len(source: str) -> int:
        return prompt_token_count(tokenizer, example.messages(source, with_answer=False))

    if prompt_len(example.source_text) <= budget:
        return example.source_text, False
    lines = example.source_text.split("\n")
    keep = _largest_fitting(lambda k: prompt_len(shorten_lines(example.source_text, max(k, 2), example.language))
                            <= budget, len(lines) - 1)
    if keep is not None:
        return shorten_lines(example.source_text, max(keep, 2), example.language), True
    chars = _largest_fitting(lambda k: prompt_len(_shorten_chars(example.source_text, k, example.language)) <= budget,
                             len(example.source_text))
    if chars is None:
        raise ChatTemplateError(f"{example.id}: the prompt without any source text is longer than {budget} tokens")
    return _shorten_chars(example.source_text, chars, example.language), True


def encode_example(tokenizer, example: Example, max_length: int, min_prompt_tokens: int) -> Encoded:
    encoded = encode_messages(tokenizer, example.messages())
    if len(encoded.input_ids) <= max_length:
        return encoded
    prompt_budget = max(min_prompt_tokens, max_length - encoded.answer_tokens)
    source, _ = fit_source(tokenizer, example, prompt_budget)
    encoded = encode_messages(tokenizer, example.messages(source))
    encoded.truncated = "source"
    if len(encoded.input_ids) > max_length:
        # The answer alone is too long: keep its beginning (the model still learns to open the note).
        encoded.input_ids = encoded.input_ids[:max_length]
        encoded.labels = encoded.labels[:max_length]
        encoded.answer_tokens = sum(label != IGNORE_INDEX for label in encoded.labels)
        encoded.truncated = "source+answer"
    return encoded
