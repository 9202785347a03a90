"""`chatmesh cluster`: its state file, tables and stops, and a real cluster up and down."""
