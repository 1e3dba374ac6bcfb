"""Extraction: tokenise, run the model and SAE, stage chunks, merge into a run."""
