"""Interoperability: export our checkpoints as Hugging Face Llama models and import them back."""
