"""The CDS services this server offers, read from services.yaml and checked once."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from copilot.qc.registry import CATEGORIES, SEVERITIES

SERVICES_FILE = Path(__file__).with_name("services.yaml")
HOOKS = ("patient-view", "order-sign")
INDICATORS = ("info", "warning", "critical")


class ServiceError(ValueError):
    pass


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Behaviour(Strict):
    mode: Literal["record_summary", "draft_orders", "vte_risk"]
    categories: list[str] = list(CATEGORIES)
    required_prefetch: list[str] = []
    required_context: list[str] = []
    single_card_severities: list[str] = []
    max_single_cards: int = Field(5, ge=0)
    max_listed: int = Field(20, ge=1)
    unknown_drug_card: bool = False

    @model_validator(mode="after")
    def _known(self):
        unknown = set(self.categories) - set(CATEGORIES)
        if unknown:
            raise ValueError(f"unknown QC categories: {', '.join(sorted(unknown))}")
        if set(self.single_card_severities) - set(SEVERITIES):
            raise ValueError(f"single_card_severities must be among {', '.join(SEVERITIES)}")
        return self


class Service(Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    hook: Literal[HOOKS]  # type: ignore[valid-type]
    title: str
    description: str
    prefetch: dict[str, str] = {}
    copilot: Behaviour

    @model_validator(mode="after")
    def _prefetch_keys(self):
        missing = set(self.copilot.required_prefetch) - set(self.prefetch)
        if missing:
            raise ValueError(f"required_prefetch names keys without a template: {', '.join(sorted(missing))}")
        if self.copilot.mode == "draft_orders" and self.hook != "order-sign":
            raise ValueError("mode draft_orders needs the order-sign hook")
        return self

    def discovery(self) -> dict:
        """The published definition (CDS Hooks: optional fields are omitted, never empty)."""
        body = {"hook": self.hook, "id": self.id, "title": self.title, "description": self.description}
        if self.prefetch:
            body["prefetch"] = dict(self.prefetch)
        return body


class CardSource(Strict):
    label: str
    topic_system: str


class Catalogue(Strict):
    card_source: CardSource
    indicators: dict[str, Literal[INDICATORS]]  # type: ignore[valid-type]
    source_preference: list[str]
    services: list[Service]

    @model_validator(mode="after")
    def _complete(self):
        if set(self.indicators) != set(SEVERITIES):
            raise ValueError(f"indicators must map exactly the QC severities {', '.join(SEVERITIES)}")
        ids = [s.id for s in self.services]
        if len(set(ids)) != len(ids):
            raise ValueError("service ids must be unique")
        return self

    def get(self, service_id: str) -> Service | None:
        return next((s for s in self.services if s.id == service_id), None)


def load(path: Path = SERVICES_FILE) -> Catalogue:
    try:
        return Catalogue.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError) as exc:
        raise ServiceError(f"{path}: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ServiceError(f"{path}: {'/'.join(map(str, first['loc']))}: {first['msg']}") from None


@lru_cache(maxsize=1)
def catalogue() -> Catalogue:
    return load()
