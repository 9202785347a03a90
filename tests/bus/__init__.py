"""The Bus contract, run against the in-process bus (memory and file log) and NATS."""
