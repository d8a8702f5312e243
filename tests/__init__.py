"""The test suite (a package, so that benchmarks can import its procedural weights: run them with
``python -m benchmarks.NAME`` from the repo root)."""
