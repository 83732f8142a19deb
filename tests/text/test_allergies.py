import pytest

from copilot.text.allergies import note_allergies


@pytest.mark.parametrize("text, expected", [
    ("过敏史：磺胺类药物过敏。", ["磺胺类"]),
    ("药物过敏史：青霉素、头孢类过敏", ["青霉素", "头孢类"]),
    ("过敏史：对青霉素过敏，有对乙酰氨基酚过敏史", ["青霉素", "对乙酰氨基酚"]),
    ("Allergies: PCN (rash), sulfa drugs", ["PCN", "sulfa drugs"]),
    ("主诉：咳嗽3天\n过敏史： 无", []),
    ("过敏史：否认药物过敏史", []),
    ("ALLERGIES: NKDA", []),
    ("Allergies: No known drug allergies.", []),
    ("Allergies: none known", []),
    ("The patient has no allergies line here; penicillin was discussed.", []),
])
def test_allergens_on_a_notes_allergy_lines(text, expected):
    assert note_allergies(text) == expected
