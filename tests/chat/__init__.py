"""chat_service over real gRPC sockets: the guarantees of SPEC.md, access, roles and limits."""
