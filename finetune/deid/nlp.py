"""Presidio's spaCy engine bound to a pipeline installed as a Python package.

Presidio's own SpacyNlpEngine calls ``spacy.cli.download`` when a model name is not installed;
here the package is imported directly and a missing package is an error, so no code path can
reach the network.
"""

from __future__ import annotations

import importlib

from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine


class ModelMissing(RuntimeError):
    pass


class InstalledSpacyNlpEngine(SpacyNlpEngine):
    """A SpacyNlpEngine that loads ``package`` with ``import`` and never downloads."""

    def __init__(self, package: str, entity_mapping: dict[str, str], disable: list[str] | None = None,
                 default_score: float = 0.85):
        labels = ["CARDINAL", "DATE", "EVENT", "LANGUAGE", "LAW", "MONEY", "NORP", "ORDINAL", "ORG", "PERCENT",
                  "PRODUCT", "QUANTITY", "TIME", "WORK_OF_ART", "FAC", "GPE", "LOC", "PERSON"]
        config = NerModelConfiguration(
            model_to_presidio_entity_mapping=dict(entity_mapping),
            labels_to_ignore=[label for label in labels if label not in entity_mapping],
            default_score=default_score,
            low_score_entity_names=[],
        )
        super().__init__(models=[{"lang_code": "en", "model_name": package}], ner_model_configuration=config)
        self.package = package
        self.disable = list(disable or [])

    def load(self) -> None:
        try:
            module = importlib.import_module(self.package)
        except ImportError:
            raise ModelMissing(
                f"the spaCy pipeline package {self.package!r} is not installed; install it with pip "
                f"(it is a dependency of the project), models are never downloaded at run time") from None
        self.nlp = {"en": module.load(disable=self.disable)}

    def _doc_to_nlp_artifact(self, doc, language: str):
        artifacts = super()._doc_to_nlp_artifact(doc, language)
        if "lemmatizer" not in self.nlp[language].pipe_names:  # context words then match surface forms
            artifacts.lemmas = [token.lower_ for token in doc]
            artifacts.keywords = artifacts.set_keywords(self, artifacts.lemmas, language)
        return artifacts

    @staticmethod
    def _download_spacy_model_if_needed(model_name: str) -> None:
        raise ModelMissing(f"refusing to download spaCy model {model_name!r}")
