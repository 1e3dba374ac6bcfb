"""Loading models and SAEs (Hugging Face, SAE-Lens, Gemma Scope 2) and the models built here (tiny, Gemma 3 270M)."""
