"""Training SAEs with SAE-Lens on cached activations (``train-sae``, ``build-training-corpus``)."""
