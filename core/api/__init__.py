"""The gRPC services core serves and their edges: request checks, the guard, TLS."""
