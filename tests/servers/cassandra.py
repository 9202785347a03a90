"""The CQL test server: chatmesh_launcher/cluster/cassandra.py (`chatmesh cluster up` runs it too).

`python -m tests.servers.cassandra [--resolve]` still works (same as the launcher module's).
"""

import sys

from chatmesh_launcher.cluster.cassandra import (
    CASSANDRA_VERSION,
    CassandraServer,
    CassandraStartError,
    CassandraUnavailable,
    cache_dir,
    find_java,
    main,
    resolve_classpath,
)

__all__ = [
    "CASSANDRA_VERSION",
    "CassandraServer",
    "CassandraStartError",
    "CassandraUnavailable",
    "cache_dir",
    "find_java",
    "main",
    "resolve_classpath",
]

if __name__ == "__main__":
    sys.exit(main(sys.argv))
