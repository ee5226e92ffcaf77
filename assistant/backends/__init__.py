"""Model backends: one registry, one streaming interface (`Backend.generate`), aliases for names people use."""

from assistant.backends.base import Backend, GenerationSettings, available_backends, load_backend, register

__all__ = ["Backend", "GenerationSettings", "available_backends", "load_backend", "register"]
