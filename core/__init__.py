"""cursorgate core: api (gRPC services), chat (model choice, answer shaping), pool (Cursor accounts,
routing), licensing, shared (Redis state across replicas), observability, upstream, store, auth."""
