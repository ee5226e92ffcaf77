"""Settings: built-in defaults < `$MEDASSIST_HOME/config.toml` < `MEDASSIST_*` variables < command-line flags."""

from __future__ import annotations

import os
import tempfile
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path

from platformdirs import user_data_dir

from index.compute import DTYPE_CHOICES


GENERATE_CHOICES = ("auto", "always", "never")
# LoRAs of Gemma-3-270M shipped in the package, each with a model card: `--adapter reader`, the grounded reader
# (how it was trained and why it is not the default), and `--adapter recipe`, the seeds' medical-o1 recipe (kept
# for evaluation: base vs tuned).
ADAPTERS = {name: Path(__file__).parent / "adapters" / f"gemma3-270m-{name}" for name in ("reader", "recipe")}


class ConfigError(Exception):
    """The configuration file or an override is invalid; the message names the file or variable."""


class Secret:
    """An API key. Its repr and str are masked, so a config's repr, a traceback's locals or a message built
    from it never shows the key; `reveal()` is the one way to read it, where it is sent."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Config:
    home: Path
    chroma_url: str | None = None  # e.g. http://127.0.0.1:8000 for a `chroma run` server; None: embedded on disk
    embed_model: str | None = None  # a sentence-transformers folder or Hub id; None: the packaged all-MiniLM-L6-v2
    # Precision of the embedder and the in-process model: auto = bf16 on a GPU or on a CPU with bf16 matrix
    # instructions (AMX, AVX512-BF16), else fp32 (index/compute.py); bfloat16 | float32 force one.
    compute_dtype: str = "auto"
    max_file_mb: int = 64
    rrf_k: float = 60.0
    backend: str = "transformers"  # transformers | openai | llamacpp (assistant/backends/base.py has the aliases)
    model: str | None = None  # a model folder, .gguf file, Hub id, or server model name; None: Gemma-3-270M
    adapter: str | None = None  # a PEFT adapter folder (transformers) or LoRA .gguf (llamacpp)
    base_url: str | None = None  # the openai backend's server, e.g. http://127.0.0.1:8080/v1
    api_key: Secret | None = None  # sent to that server as a bearer token; OPENAI_API_KEY is used when unset
    # A key is never sent in plain http to another machine (anyone on the way could read it) unless this is on.
    allow_insecure_http: bool = False
    # A `medassist serve` server that answers `ask` and `chat` instead of this machine's index and model (its
    # README section, "Serving a team"), and the API key it gave you (`medassist serve keys add`).
    server: str | None = None
    server_key: Secret | None = None
    k: int = 5
    use_rag: bool = True  # False: model-only answers, labelled unsourced
    # Whether the model writes an answer after the evidence reader's quotes (it replaces them only where its
    # sentences pass the citation check). auto: yes for any model but the bare packaged Gemma-3-270M, whose own
    # sentences passed the check in 0 of the answers measured (docs/benchmarks.md), so it would only make every
    # answer ~20 s slower. always | never force it.
    generate: str = "auto"
    # Generation; None keeps GenerationSettings' default (assistant/backends/base.py says why each is what it is)
    max_new_tokens: int | None = None
    max_think_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None

    def adapter_path(self) -> str | None:
        """The adapter folder: a packaged one's by its name (ADAPTERS), any other as given."""
        return str(ADAPTERS.get(self.adapter, self.adapter)) if self.adapter else None

    def backend_factory(self):
        """A function that loads the configured model backend (loading is slow, so it is deferred)."""
        from assistant.backends import load_backend

        adapter = self.adapter_path()
        return lambda on_status=None: load_backend(self.backend, model=self.model, adapter=adapter,
                                                   base_url=self.base_url, api_key=self.api_key, home=self.home,
                                                   compute_dtype=self.compute_dtype,
                                                   allow_insecure_http=self.allow_insecure_http, on_status=on_status)

    def generates(self) -> bool:
        """Does the model write an answer after the evidence (see `generate`)?"""
        from assistant.backends.base import ALIASES

        if self.generate != "auto":
            return self.generate == "always"
        return bool(self.adapter or self.model or ALIASES.get(self.backend, self.backend) != "transformers")

    def generation_settings(self):
        from assistant.backends import GenerationSettings

        chosen = {f.name: getattr(self, f.name) for f in fields(GenerationSettings)}
        return GenerationSettings(**{name: value for name, value in chosen.items() if value is not None})

    def remote_agent(self):
        """The agent and knowledge base of the `server` this config names (assistant/remote.py)."""
        from assistant.remote import RemoteAgent

        agent = RemoteAgent(self.server, self.server_key, allow_insecure_http=self.allow_insecure_http)
        agent.k = self.k
        return agent

    def knowledge_base(self):
        from index import KnowledgeBase

        return KnowledgeBase(self.home, chroma_url=self.chroma_url, embed_model=self.embed_model,
                             max_file_bytes=self.max_file_mb * 2**20, rrf_k=self.rrf_k,
                             compute_dtype=self.compute_dtype)


_TYPES = {f.name: f.type for f in fields(Config) if f.name != "home"}


def default_home() -> Path:
    return Path(os.environ.get("MEDASSIST_HOME") or user_data_dir("medassist", appauthor=False))


def load_config(home: Path | str | None = None, **flags) -> Config:
    """The effective settings; `flags` are command-line values (None means not given)."""
    home = Path(home).expanduser() if home else default_home()
    values: dict = {}
    path = home / "config.toml"
    if path.exists():
        try:
            values.update(tomllib.loads(path.read_text(encoding="utf-8")))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
        unknown = set(values) - set(_TYPES)
        if unknown:
            raise ConfigError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}; known: {', '.join(_TYPES)}")
    for name in _TYPES:
        env = os.environ.get(f"MEDASSIST_{name.upper()}")
        if env is not None:
            values[name] = env
    values.update({k: v for k, v in flags.items() if v is not None})
    return replace(Config(home), **{k: _coerce(k, v, path) for k, v in values.items()})


def save_settings(home: Path, changed: dict) -> Path:
    """Write `changed` settings (None removes one) to HOME/config.toml, keeping the user's comments and layout. The
    file is replaced in one step (a crash leaves the old one or the new one) and is readable only by its owner
    when it holds an API key."""
    import tomlkit

    path = home / "config.toml"
    try:
        document = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else tomlkit.document()
    except (tomlkit.exceptions.ParseError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    for name, value in changed.items():
        if value is None:
            document.pop(name, None)
        else:
            document[name] = value.reveal() if isinstance(value, Secret) else value
    secret = {"api_key", "server_key"} & set(document)
    mode = 0o600 if secret else (path.stat().st_mode & 0o777 if path.exists() else 0o644)
    home.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=home, prefix=".config.toml.")  # created 0600: the key is never readable
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(tomlkit.dumps(document))
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _coerce(name: str, value, path: Path):
    kind = _TYPES[name]
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if str(value).strip().lower() not in _BOOLEANS:
                raise ValueError(value)
            return _BOOLEANS[str(value).strip().lower()]
        if "int" in kind:
            value = int(value)
        elif "float" in kind:
            value = float(value)
        elif "Secret" in kind:
            return Secret(str(value)) if value else None
        else:
            value = str(value) or None
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name!r} (from {path}, MEDASSIST_{name.upper()} or a flag) "
                          f"must be {kind}, got {value!r}") from None  # never a secret: those are not converted
    for field, choices in (("generate", GENERATE_CHOICES), ("compute_dtype", DTYPE_CHOICES)):
        if name == field and value not in choices:
            raise ConfigError(f"setting {field!r} (from {path}, MEDASSIST_{field.upper()} or a flag) must be one of "
                              f"{', '.join(choices)}, got {value!r}")
    if isinstance(value, (int, float)) and (value < 0 or value == 0 and name != "temperature"):
        raise ConfigError(f"setting {name!r} must be positive, got {value}")  # temperature 0 means greedy
    return value
