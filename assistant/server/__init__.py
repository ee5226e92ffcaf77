"""`medassist serve`: the HTTP API (app.py), its keys, limits and OpenAI-compatible endpoints."""
