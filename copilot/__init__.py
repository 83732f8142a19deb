"""Clinical copilot: private, CPU-first note drafting and record QC."""

__version__ = "0.1.0"
