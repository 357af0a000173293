"""The OpenAI Responses API (`/v1/responses`): protocol models, conversion, streaming, routes."""
