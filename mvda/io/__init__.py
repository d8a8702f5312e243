"""PyAV video reading and writing."""
