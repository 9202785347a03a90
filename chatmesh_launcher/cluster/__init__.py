"""`chatmesh cluster`: a local cluster of real processes, and the server runners tests share."""
