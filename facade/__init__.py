"""cursorgate facade: the OpenAI REST API, a thin translator over the core gRPC API."""
