"""cursorgate core: gRPC API, upstream Connect client to Cursor, licenses and account pool."""
