"""The storage contract suite: one set of tests that every ChatStore implementation must pass."""
