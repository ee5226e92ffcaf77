"""Where the embedder and the in-process model run, and in which precision: one decision, used by both.

On a CPU with bf16 matrix instructions (Intel AMX or AVX512-BF16) oneDNN runs bf16 matrix products several
times faster than fp32 (all-MiniLM-L6-v2: 36 -> 94 texts/s on 2 cores, cosine to fp32 >= 0.998); on a CPU
without them bf16 is emulated and slower than fp32, so it is detected, never assumed. A CUDA GPU is used when
present (embedding a large corpus there is what a user with one expects), in bf16 where it supports it.
`compute_dtype` in the config (MEDASSIST_COMPUTE_DTYPE) overrides the dtype: auto | bfloat16 | float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

DTYPE_CHOICES = ("auto", "bfloat16", "float32")
# Either one gives oneDNN native bf16 matrix products; AVX512-BF16 alone (Cooper Lake, Zen 4) already beats fp32.
BF16_MATMUL_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class Compute:
    device: str  # "cuda" or "cpu"
    dtype: str  # "bfloat16" or "float32"
    why: str  # one line for logs and benchmark files

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags: /proc/cpuinfo's on Linux, torch's cpuinfo probe elsewhere (macOS, Windows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    import torch

    return frozenset(name for name, value in torch.cpu.get_capabilities().items() if value is True)


def bf16_matmul_flags(flags: Iterable[str]) -> list[str]:
    """The flags among `flags` that mean native bf16 matrix products (empty: bf16 would be emulated, slower)."""
    flags = set(flags)
    return [flag for flag in BF16_MATMUL_FLAGS if flag in flags]


def choose_compute(setting: str | None = "auto", *, cuda: bool | None = None,
                   flags: Iterable[str] | None = None) -> Compute:
    """The device and dtype for `setting` (auto | bfloat16 | float32; None means auto). `cuda` and `flags`
    default to this machine's; tests pass their own."""
    setting = setting or "auto"
    if setting not in DTYPE_CHOICES:
        raise ValueError(f"compute_dtype must be one of {', '.join(DTYPE_CHOICES)}, got {setting!r}")
    if cuda is None:
        cuda = _cuda_available()
    if cuda:
        if setting != "auto":
            return Compute("cuda", setting, f"CUDA, {setting} as configured")
        return Compute("cuda", "bfloat16" if _cuda_bf16() else "float32", "CUDA")
    if setting != "auto":
        return Compute("cpu", setting, f"CPU, {setting} as configured")
    found = bf16_matmul_flags(cpu_flags() if flags is None else flags)
    if found:
        return Compute("cpu", "bfloat16", f"CPU with {' and '.join(found)}")
    return Compute("cpu", "float32", "CPU without bf16 matrix instructions")


@lru_cache(maxsize=1)
def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _cuda_bf16() -> bool:
    import torch

    return torch.cuda.is_bf16_supported()
