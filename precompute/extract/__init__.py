"""Extraction: run the model and SAE over a corpus in chunks, stage them, merge them into a run."""
