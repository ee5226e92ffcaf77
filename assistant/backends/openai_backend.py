"""Any OpenAI-compatible server (vLLM, llama.cpp's server, Ollama, ...) by base URL and model name.

It uses the completions endpoint (`POST {base_url}/completions`), not chat: the prompt is already
built by `finetune.prompt` in the format the model was tuned on, and a server-side chat template would
wrap it a second time. Tokens arrive as server-sent events and are yielded as they come.
"""

from __future__ import annotations

import ipaddress
import json
import os
import threading
from typing import Iterator

from assistant.backends.base import BackendError, GenerationSettings, register, until_stop
from assistant.config import Secret

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 300.0  # a big model on a busy server may think for minutes before its first token
MAX_STOP_STRINGS = 4  # the OpenAI API's limit; the rest are applied here as the text streams in


def server_url(base_url: str, sends_key: bool, allow_insecure_http: bool = False) -> str:
    """The server's URL, checked before anything is sent to it: http(s) with a host; and an API key goes in plain
    http only to this machine, or where the user said the network is trusted."""
    import httpx

    example = "for example http://127.0.0.1:8080/v1"
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise BackendError(f"base_url {base_url!r} is not a valid URL ({exc}); {example}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise BackendError(f"base_url {base_url!r} must start with http:// or https:// and name a host; {example}")
    if sends_key and url.scheme == "http" and not is_loopback(url.host) and not allow_insecure_http:
        raise BackendError(f"refusing to send the API key in plain http to {url.host}, where anyone on the way "
                           "could read it: use https, or set allow_insecure_http = true in config.toml "
                           "(MEDASSIST_ALLOW_INSECURE_HTTP=1) if that network is trusted")
    return base_url.rstrip("/")


def is_loopback(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (also written "[::1]", as in a URL or uvicorn's --host)."""
    host = host.strip("[]")
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@register("openai")
class OpenAIBackend:
    name = "openai"

    def __init__(self, model: str | None = None, base_url: str | None = None, api_key: Secret | None = None,
                 adapter: str | None = None, allow_insecure_http: bool = False, **_ignored):
        import httpx

        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise BackendError("the openai backend needs a server: set base_url in config.toml, MEDASSIST_BASE_URL "
                               "or --base-url (for example http://127.0.0.1:8080/v1)")
        if adapter:
            raise BackendError("the openai backend cannot apply an adapter itself; serve it from the server "
                               "(vLLM: --enable-lora --lora-modules NAME=DIR) and pass its name as --model")
        # The key is a Secret (masked in any repr or traceback's locals) until it goes into httpx's headers,
        # whose repr masks it too.
        key = api_key or os.environ.get("OPENAI_API_KEY") or None
        key = key if key is None or isinstance(key, Secret) else Secret(key)
        self.base_url = server_url(base_url, sends_key=key is not None, allow_insecure_http=allow_insecure_http)
        self.client = httpx.Client(base_url=self.base_url,
                                   timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S))
        if key is not None:
            self.client.headers["Authorization"] = f"Bearer {key.reveal()}"
        self.model_name = model or self._served_model()
        self.eos_token = ""  # the server stops at its model's EOS; nothing to append or strip here

    def _request_error(self, exc) -> BackendError:
        return BackendError(f"cannot reach the model server at {self.base_url}: {exc.__class__.__name__}: {exc}")

    def _served_model(self) -> str:
        """The server's first model: llama.cpp and single-model vLLM servers serve exactly one."""
        import httpx

        try:
            response = self.client.get("/models")
        except httpx.HTTPError as exc:
            raise self._request_error(exc) from None
        try:
            response.raise_for_status()
            return response.json()["data"][0]["id"]
        except (httpx.HTTPStatusError, ValueError, KeyError, IndexError) as exc:
            raise BackendError(f"{self.base_url}/models did not name a model ({exc}); pass --model") from None

    def generate(self, prompt: str, settings: GenerationSettings, stop: list[str] | None = None,
                 cancel: threading.Event | None = None) -> Iterator[str]:
        import httpx

        body = {"model": self.model_name, "prompt": prompt, "max_tokens": settings.max_new_tokens,
                "temperature": settings.temperature, "top_p": settings.top_p, "stream": True,
                # Not in the OpenAI API; vLLM reads the first name and llama.cpp the second, others ignore both.
                "repetition_penalty": settings.repetition_penalty, "repeat_penalty": settings.repetition_penalty}
        if stop:
            body["stop"] = stop[:MAX_STOP_STRINGS]
        try:
            # Leaving early (a stop string, `cancel`, or the caller closing this generator) leaves the
            # `with` block, which closes the connection: that is how a server learns to stop generating.
            with self.client.stream("POST", "/completions", json=body) as response:
                if response.status_code != 200:
                    detail = response.read().decode("utf-8", "replace")[:300]
                    raise BackendError(f"{self.base_url}/completions answered HTTP {response.status_code}: {detail}")
                yield from until_stop(self._pieces(response), stop, cancel)
        except httpx.HTTPError as exc:
            raise self._request_error(exc) from None

    def _pieces(self, response) -> Iterator[str]:
        """The text of each server-sent completion chunk, until [DONE]."""
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue  # blank separators and SSE comments
            data = line[len("data:"):].strip()
            if data == "[DONE]":
                return
            try:
                yield json.loads(data)["choices"][0].get("text") or ""
            except (ValueError, KeyError, IndexError):
                raise BackendError(f"{self.base_url} sent an event that is not a completion chunk: {data[:200]}") from None
