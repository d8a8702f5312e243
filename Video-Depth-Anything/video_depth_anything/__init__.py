"""Video-Depth-Anything network: our implementation, state-dict compatible with the official checkpoints."""
