"""Publishing runs (``publish``) and importing the post's published activations (``import-published``)."""
