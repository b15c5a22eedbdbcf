"""Fuzzing the config loader (hypothesis, bounded for CI): random YAML text and random config-shaped
mappings give a Config or a ConfigError whose every line names a key path, never another exception."""

from __future__ import annotations

import os
from contextlib import contextmanager

import yaml
from hypothesis import given
from hypothesis import strategies as st

from streamer.config import REDIS_URL_ENV, SHARD_INDEX_ENV, Config, key_path, load_config, parse_config
from streamer.errors import ConfigError
from tests.fuzz import CAMERA, FUZZ, VALUES


def _section(model) -> st.SearchStrategy:
    keys = st.sampled_from(sorted(model.model_fields)) | st.text(max_size=8)
    return st.dictionaries(keys, VALUES, max_size=5) | VALUES


SECTIONS = {name: _section(f.annotation) if isinstance(f.annotation, type) and hasattr(f.annotation, "model_fields") else VALUES
            for name, f in Config.model_fields.items() if name != "cameras"}
VALID_CAMERAS = st.just([{"id": "a", "url": "rtsp://h/1"}])  # so that the sections' own rules are reached
CONFIGS = st.fixed_dictionaries({"cameras": VALID_CAMERAS | st.lists(CAMERA, max_size=3) | VALUES},
                                optional={**SECTIONS, "junk": VALUES}) | VALUES


@contextmanager
def env(on: bool):
    """With or without the environment overrides (they merge into the data before validation)."""
    old = {k: os.environ.get(k) for k in (REDIS_URL_ENV, SHARD_INDEX_ENV)}
    if on:
        os.environ.update({REDIS_URL_ENV: "redis://127.0.0.1:1/0", SHARD_INDEX_ENV: "0"})
    else:
        for k in old:
            os.environ.pop(k, None)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def assert_config_error(e: ConfigError, source: str, data) -> None:
    """The file named first, then one line per error: "  <key path>[ (line N)]: <message>", the path
    starting at a key of the data or of the schema (or "(top level)")."""
    lines = str(e).splitlines()
    assert lines[0].startswith(source + ":"), lines
    roots = ["(top level)", *Config.model_fields] + ([key_path((k,)) for k in data] if isinstance(data, dict) else [])
    for line in lines[1:]:
        assert line.startswith("  ") and ": " in line and any(line[2:].startswith(r) for r in roots), lines


@FUZZ
@given(data=CONFIGS, with_env=st.booleans())
def test_random_mappings_give_a_config_or_key_path_errors(data, with_env):
    with env(with_env):
        try:
            assert isinstance(parse_config(data, "fuzz"), Config)
        except ConfigError as e:
            assert_config_error(e, "fuzz", data)


@FUZZ
@given(data=CONFIGS, junk=st.text(max_size=30), cut=st.floats(0, 1))
def test_random_yaml_files_load_or_fail_with_key_path_errors(tmp_path_factory, data, junk, cut):
    """The YAML of a random config, cut short and with junk inserted: line numbers are looked up too."""
    text = yaml.safe_dump(data, allow_unicode=True) if not isinstance(data, str) else data
    at = int(len(text) * cut)
    p = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    p.write_text(text[:at] + junk + text[at:], errors="surrogatepass")
    try:
        load_config(p)
    except ConfigError as e:
        if "not valid YAML" not in str(e):
            assert_config_error(e, str(p), yaml.safe_load(p.read_text()))
