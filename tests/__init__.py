"""chatmesh's test suite: one package (`tests.servers`, `tests.chat.support`, ...)."""
