"""Benchmarks (`make bench`): numbers go into docs/benchmarks.md, never into test assertions."""
