"""Benchmarks of chatmesh; each prints its figures and the command that produced them."""
