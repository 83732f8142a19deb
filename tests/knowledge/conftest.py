from __future__ import annotations

import textwrap
from pathlib import Path

import pytest


DEFAULTS = """\
defaults:
  version: "1"
  reviewed: 2026-11-01
  effective: 2026-11-01
  review_by: 2027-04-30
  status: active
  source: {title: Test source document, issuer: Test issuer, url: https://example.org/doc}
"""


def write_sources(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in files.items():
        (folder / name).write_text(textwrap.dedent(body), encoding="utf-8")
    return folder


MINI = {
    "classes.yaml": "kind: drug_class\n" + DEFAULTS + """
items:
  - {id: drug_class.beta_lactam, name: beta-lactam, parent: null}
  - id: drug_class.penicillin
    name: penicillins
    parent: beta_lactam
    cross_reacts_with: [{class: cephalosporin, note: low risk}]
  - {id: drug_class.cephalosporin, name: cephalosporins, parent: beta_lactam}
""",
    "drugs.yaml": "kind: drug\n" + DEFAULTS + """
items:
  - id: drug.amoxicillin
    name: amoxicillin
    brands: [Amoxil]
    classes: [penicillin, beta_lactam]
    allergy_groups: [penicillin]
    max_daily_dose: {value: 3000, unit: mg, route: oral}
  - id: drug.cephalexin
    name: cephalexin
    brands: [Keflex]
    classes: [cephalosporin, beta_lactam]
    allergy_groups: [cephalosporin]
    max_daily_dose: {value: 4000, unit: mg, route: oral}
""",
    "passages.yaml": "kind: passage\n" + DEFAULTS + """
items:
  - id: passage.test.sepsis
    title: Sepsis bundle
    text: Obtain blood cultures before antibiotics, measure lactate, and give broad-spectrum antibiotics within one hour of recognizing septic shock in adult patients.
    topics: [sepsis]
  - id: passage.test.old-advice
    title: Old screening advice
    text: This outdated recommendation about screening intervals was replaced by a newer statement and must never be shown to clinicians again in any search.
    topics: [screening]
    status: retired
    retired_reason: Superseded by the newer statement
""",
}


@pytest.fixture
def mini_sources(tmp_path) -> Path:
    return write_sources(tmp_path / "sources", MINI)
