"""CDS Hooks: service definitions (services.yaml), hook requests -> records, QC findings -> cards.

No Flask here; copilot/web/cds_hooks.py serves it.
"""
