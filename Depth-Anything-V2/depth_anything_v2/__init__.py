"""Depth-Anything-V2 (metric) network: our implementation, state-dict compatible with the official checkpoints."""
