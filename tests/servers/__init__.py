"""Real servers for tests: find their binaries, start them on free ports, restart, stop.

Imported as `tests.servers.*`, like every test module (tests/ is one package).
"""
