"""Model preparation (GGUF/transformers -> OpenVINO IR) and the inference engine."""
