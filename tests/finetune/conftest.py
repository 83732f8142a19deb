"""Fine-tuning fixtures: small public-format sources written here, the tiny model, one pipeline run.

The pipeline stages build on each other (dataset -> adapter -> export), so one session-scoped
run of each stage serves every test that inspects it; the stages' own tests assert on them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

ACI_TRAIN = [
    ("D2N901", "[doctor] hi , martha collins . how are you ?\n[patient] i have had headaches for two weeks .\n"
               "[doctor] are you still taking lisinopril 10 mg daily for your hypertension ?\n[patient] yes , every morning .\n"
               "[doctor] any chest pain ?\n[patient] no .\n[doctor] blood pressure today is 150 over 90 .\n"
               "[doctor] let's increase lisinopril to 20 mg daily and check labs in two weeks .",
     "CHIEF COMPLAINT\n\nHeadaches.\n\nHISTORY OF PRESENT ILLNESS\n\nMartha Collins reports headaches for two weeks. "
     "She takes lisinopril 10 mg daily for hypertension.\n\nASSESSMENT AND PLAN\n\nHypertension: increase lisinopril "
     "to 20 mg daily. Labs in two weeks."),
    ("D2N902", "[doctor] good morning , mr. james walker .\n[patient] my knee hurts after running .\n"
               "[doctor] any swelling ?\n[patient] a little on the right knee .\n[doctor] take ibuprofen 400 mg as needed .",
     "CHIEF COMPLAINT\n\nRight knee pain.\n\nASSESSMENT AND PLAN\n\nRight knee pain after running. Ibuprofen 400 mg "
     "as needed."),
    ("D2N903", "[doctor] how is your diabetes , sophia ?\n[patient] my sugars are high .\n"
               "[doctor] you take metformin 500 mg twice daily ?\n[patient] yes .\n[doctor] we will add a second agent .",
     "HISTORY OF PRESENT ILLNESS\n\nSophia reports high sugars on metformin 500 mg twice daily.\n\n"
     "ASSESSMENT AND PLAN\n\nType 2 diabetes: continue metformin, add a second agent."),
    ("D2N904", "[doctor] you have a cough , robert ?\n[patient] yes for five days .\n[doctor] any fever ?\n"
               "[patient] no fever .\n[doctor] lungs are clear . rest and fluids .",
     "CHIEF COMPLAINT\n\nCough.\n\nASSESSMENT AND PLAN\n\nCough for five days without fever; lungs clear. Rest and fluids."),
]
ACI_VALID = [
    ("D2N951", "[doctor] hello , anna smith .\n[patient] my asthma is worse at night .\n"
               "[doctor] use albuterol 2 puffs as needed and continue fluticasone .\n[patient] okay .",
     "CHIEF COMPLAINT\n\nAsthma.\n\nASSESSMENT AND PLAN\n\nAsthma worse at night. Albuterol 2 puffs as needed; continue "
     "fluticasone."),
    ("D2N952", "[doctor] david , your blood pressure is high .\n[patient] i stopped amlodipine 5 mg .\n"
               "[doctor] please restart amlodipine 5 mg daily .",
     "ASSESSMENT AND PLAN\n\nHypertension, off amlodipine. Restart amlodipine 5 mg daily."),
]
MTS = [
    ("GENHX", "Doctor: What brings you in?\nPatient: Back pain for three days after lifting boxes.",
     "The patient reports back pain for three days after lifting boxes."),
    ("MEDICATIONS", "Doctor: Any medicines?\nPatient: Only atorvastatin 20 mg at night.", "Atorvastatin 20 mg at night."),
    ("ALLERGY", "Doctor: Any allergies?\nPatient: Penicillin gives me a rash.", "Penicillin (rash)."),
    ("FAM/SOCHX", "Doctor: Do you smoke?\nPatient: No, never.", "Never smoker."),
]
RECORD_NOTE = ("CHIEF COMPLAINT\n\nFollow-up of hypertension.\n\nHISTORY OF PRESENT ILLNESS\n\nMr. Peter Hall is a 64-year-old "
               "man seen for blood pressure follow-up. He takes lisinopril 10 mg daily and checks his pressure at home; "
               "readings are around 140/85. He denies headaches or chest pain.\n\nASSESSMENT AND PLAN\n\nHypertension, not "
               "at goal. Increase lisinopril to 20 mg daily. Recheck in 4 weeks.")
ZH_NOTE = ("主诉：头痛3天。\n"
           "现病史：患者王秀英，女，58岁，3天前无明显诱因出现头痛，伴头晕，无发热。既往高血压10年，"
           "规律服用氨氯地平5 mg 每日一次，血压控制尚可。近日因工作劳累血压升高。\n"
           "体格检查：血压160/95 mmHg，神志清楚，心肺未见异常。\n"
           "初步诊断\n原发性高血压\n"
           "处理：氨氯地平加量至10 mg 每日一次，监测血压，1周后复诊。")


def _record(record_id: str, text: str, doc_type: str = "progress_note") -> dict:
    return {"id": record_id, "patient": {"sex": "male", "age": 64, "allergies": ["penicillin"]},
            "encounter": {"type": "outpatient"},
            "documents": [{"id": f"{record_id}-d1", "type": doc_type, "authored_at": "2025-09-03T10:55:00Z",
                           "text": text}],
            "medications": [{"name": "lisinopril", "dose": 10, "unit": "mg", "route": "oral", "frequency": "daily"}],
            "diagnoses": [{"text": "Essential hypertension", "code": "I10"}]}


def write_sources(root: Path) -> dict[str, Path]:
    aci, mts = root / "aci-bench", root / "mts-dialog"
    aci.mkdir(parents=True)
    mts.mkdir()
    for name, rows in (("train.json", ACI_TRAIN), ("valid.json", ACI_VALID)):
        data = {"data": [{"src": src, "tgt": tgt, "file": f"{file}-virtassist"} for file, src, tgt in rows]}
        (aci / name).write_text(json.dumps(data), encoding="utf-8")
    for name, rows in (("train.csv", MTS * 2), ("valid.csv", MTS[:2])):
        with (mts / name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["ID", "section_header", "section_text", "dialogue"])
            for index, (header, dialogue, text) in enumerate(rows):
                writer.writerow([index, header, text, dialogue])
    records = root / "records.jsonl"
    lines = [
        _record("rec-clean-1", RECORD_NOTE),
        {"record": _record("devset-like-1", RECORD_NOTE.replace("Peter Hall", "Walter Green")), "expected": [],
         "clean": True, "source": {"dataset": "aci-bench", "split": "train", "file": "D2N901-virtassist"}},
        {"record": _record("devset-defect-1", RECORD_NOTE), "expected": [{"category": "medication_safety"}],
         "clean": False, "source": {"dataset": "aci-bench", "split": "train", "file": "D2N902-virtassist"}},
        _record("rec-zh-1", ZH_NOTE, "first_course_record"),
        _record("rec-no-plan", "HISTORY OF PRESENT ILLNESS\n\nA short note without an assessment heading."),
    ]
    text = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n{not json\n"
    records.write_text(text, encoding="utf-8")
    return {"aci": aci, "mts": mts, "records": records}


@pytest.fixture(scope="session")
def sample_notes() -> dict:
    return {"record_note": RECORD_NOTE, "zh_note": ZH_NOTE, "record": _record}


@pytest.fixture(scope="session")
def scrubber():
    from finetune.deid import Scrubber

    return Scrubber()


@pytest.fixture(scope="session")
def tiny_sources(tmp_path_factory) -> dict[str, Path]:
    return write_sources(tmp_path_factory.mktemp("sources"))


@pytest.fixture(scope="session")
def finetune_settings(tiny_settings, tiny_model):
    """The tiny home: the tiny model exported (base for evaluation) and a knowledge snapshot (for KG QA)."""
    from knowledge.build import build

    build(tiny_settings.home, with_index=False, progress=lambda _: None)
    return tiny_settings


@pytest.fixture(scope="session")
def tiny_config():
    from finetune.config import load_config

    return load_config("tiny")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, finetune_settings, tiny_config, tiny_checkpoint, tiny_sources, scrubber):
    """The dataset prepared for the tiny model: (run dir, manifest)."""
    from finetune.dataset import SourceOptions, prepare_dataset
    from finetune.paths import RunDir

    run = RunDir(tmp_path_factory.mktemp("work") / "tiny-run")
    options = SourceOptions(aci_bench=tiny_sources["aci"], mts_dialog=tiny_sources["mts"],
                            records=[tiny_sources["records"]], public=False)
    manifest = prepare_dataset(tiny_config, finetune_settings, run, options, base_model=str(tiny_checkpoint),
                               scrubber=scrubber, progress=lambda _: None)
    return run, manifest


@pytest.fixture(scope="session")
def trained_run(tiny_run, tiny_config, finetune_settings, tiny_checkpoint):
    """Trained in two sittings: stopped at step 3 (checkpoint), then resumed to the configured 6 steps."""
    from finetune.train import train

    run, _ = tiny_run
    first = train(tiny_config, finetune_settings, run, base_model=str(tiny_checkpoint), stop_after=3,
                  progress=lambda _: None)
    final = train(tiny_config, finetune_settings, run, base_model=str(tiny_checkpoint), resume=True,
                  progress=lambda _: None)
    return run, first, final


@pytest.fixture(scope="session")
def exported_run(trained_run, tiny_config, finetune_settings, tiny_checkpoint):
    from finetune.export import export

    run, _, _ = trained_run
    report = export(tiny_config, finetune_settings, run, base_model=str(tiny_checkpoint), progress=lambda _: None)
    return run, report
