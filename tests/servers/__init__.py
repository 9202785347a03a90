"""Real servers for tests: find their binaries, start them on free ports, restart, stop.

Imported as `servers.*`: tests/ has no __init__.py, so pytest puts tests/ on sys.path.
"""
