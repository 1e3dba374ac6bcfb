"""Shared primitives: errors, corpus loading, tokenisation, the model + SAE forward pass, progress logs."""
