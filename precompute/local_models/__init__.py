"""Models built or assembled on this machine: the tiny preset, Gemma 3 270M, calibrated SAEs."""
