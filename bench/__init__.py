"""Benchmarks: each compares pygov against a bare baseline in the same run, on the same server."""
