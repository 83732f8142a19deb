"""Fine-tuning: de-identification gate, dataset building, LoRA training, merge and export."""
