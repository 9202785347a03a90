"""Smoke tests of the benchmark tool."""
