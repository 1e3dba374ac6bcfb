"""The job contract, torch-free: run settings, configs and presets, requests, the queue."""
