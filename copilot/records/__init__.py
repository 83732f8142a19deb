"""Patient records: one internal model, loaded from text, project JSON, JSONL and FHIR R4."""
