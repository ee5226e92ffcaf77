"""Fuzzing every loader with hostile files (tests/hostile.py): each one loads or is refused with a LoadError that
names the file, never another exception. A short run for CI; benchmarks/fuzz_inputs.py runs thousands."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hostile import check_loads_or_refuses, file_bytes, hostile_files
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corpus import SUPPORTED_SUFFIXES

# deadline=None: a 200,000-character line takes a while to chunk, and these machines are shared.
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(hostile_files)
def test_every_loader_loads_or_refuses_hostile_files(embedder, case):
    suffix, data = case
    with tempfile.TemporaryDirectory() as folder:  # not tmp_path: one file per example, not per test
        path = Path(folder) / f"hostile{suffix}"
        path.write_bytes(data)
        check_loads_or_refuses(path, embedder.tokenize)


@settings(FUZZ, max_examples=10)
@given(st.data())
def test_each_format_gets_its_own_hostile_files(data):
    """The mixed run above may draw few files of one type; every type gets a few here, without chunking."""
    for suffix in SUPPORTED_SUFFIXES:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"hostile{suffix}"
            path.write_bytes(data.draw(file_bytes(suffix), label=suffix))
            check_loads_or_refuses(path)
