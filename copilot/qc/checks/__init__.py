"""The QC checks, one module per category; importing this package registers them all."""

from copilot.qc.checks import coding, completeness, consistency, documentation, medication_safety, timeliness  # noqa: F401
from copilot.qc.checks import deadlines, quality_indicators  # noqa: F401  (the QC office's checks)
