"""Grounded note drafting: section prompts from template files, the patient's own material and
the knowledge base, and a grounding check that marks what the source does not support."""
