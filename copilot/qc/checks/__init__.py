"""The QC checks, one module per category; importing this package registers them all."""

from copilot.qc.checks import coding, completeness, consistency, documentation, medication_safety, timeliness  # noqa: F401
