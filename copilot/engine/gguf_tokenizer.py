"""Build the right tokenizer for a GGUF file from the tokens and merges stored inside it.

transformers converts a GGUF whose ``tokenizer.ggml.model`` is ``gpt2`` into a
SentencePiece-style tokenizer for some files: every space then becomes id 0 and the
model never sees a space. The GGUF carries the real byte-level BPE (tokens, merges,
special tokens, chat template), so we rebuild it with the ``tokenizers`` library.
"""

from __future__ import annotations

from pathlib import Path

from gguf import GGUFReader
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

# llama.cpp pre-tokenizer names -> the split that precedes byte-level BPE.
# "smollm" (and starcoder-style vocabularies) split every digit on its own.
_DIGIT_SPLITTING_PRE = {"smollm", "starcoder", "refact"}
_PLAIN_GPT2_PRE = {"gpt2", "default"}
CONTROL_TOKEN_TYPE = 3

ROUND_TRIP_SAMPLES = [
    "Hello world, the patient has 120/80 mmHg.",
    "  Two leading spaces, tabs\tand\nnew lines\n\n",
    "Metoprolol 25 mg PO BID; denies chest pain. Allergies: penicillin (rash).",
    "患者主诉胸痛3天，伴气短。既往史：高血压10年。",
    "Émile's café: naïve résumé — 5.5 mg/kg, ≥ 38.5 °C, µg.",
    "<|im_start|>user\nSummarize the encounter.<|im_end|>\n",
]


class UnsupportedTokenizer(ValueError):
    pass


def _field(reader: GGUFReader, key: str, default=None):
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def read_gguf_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    reader = GGUFReader(str(path))
    model = _field(reader, "tokenizer.ggml.model")
    if model != "gpt2":
        raise UnsupportedTokenizer(
            f"{path}: tokenizer.ggml.model is {model!r}; only byte-level BPE ('gpt2') GGUF "
            "tokenizers are rebuilt here. Use a Hugging Face model directory instead."
        )
    pre = _field(reader, "tokenizer.ggml.pre", "default")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    merges = _field(reader, "tokenizer.ggml.merges")
    types = _field(reader, "tokenizer.ggml.token_type")

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in _DIGIT_SPLITTING_PRE:
        pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    elif pre in _PLAIN_GPT2_PRE:
        pre_tokenizer = byte_level
    else:
        raise UnsupportedTokenizer(
            f"{path}: pre-tokenizer {pre!r} is not known to this converter; "
            "use the model's Hugging Face directory (with tokenizer.json) instead."
        )

    vocab = {token: index for index, token in enumerate(tokens)}
    bpe = models.BPE(
        vocab=vocab,
        merges=[tuple(merge.split(" ", 1)) for merge in merges],
        fuse_unk=False,
        byte_fallback=False,
    )
    tokenizer = Tokenizer(bpe)
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(
        [AddedToken(tokens[i], special=True, normalized=False) for i, t in enumerate(types) if t == CONTROL_TOKEN_TYPE]
    )

    def token(key: str) -> str | None:
        index = _field(reader, key)
        return None if index is None else tokens[int(index)]

    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=token("tokenizer.ggml.bos_token_id"),
        eos_token=token("tokenizer.ggml.eos_token_id"),
        unk_token=token("tokenizer.ggml.unknown_token_id"),
        pad_token=token("tokenizer.ggml.padding_token_id") or token("tokenizer.ggml.eos_token_id"),
        chat_template=_field(reader, "tokenizer.chat_template"),
        clean_up_tokenization_spaces=False,
        add_bos_token=bool(_field(reader, "tokenizer.ggml.add_bos_token", False)),
    )


def round_trip_failures(tokenizer, samples=ROUND_TRIP_SAMPLES) -> list[str]:
    """Texts that do not survive encode -> decode unchanged (must be empty before export)."""
    failures = []
    for text in samples:
        ids = tokenizer.encode(text, add_special_tokens=False)
        back = tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if back != text:
            failures.append(f"{text!r} -> {back!r}")
    return failures
