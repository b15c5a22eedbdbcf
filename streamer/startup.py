"""The rules a config must pass before streamer starts anything: one list, `problems(cfg)`, that
`streamer check` prints and `streamer run` checks first, so the two give the same verdict.

Each rule is the function the running parts apply themselves (the HTTP server's token rule and bind,
the pipeline's model rules, the spool's directory, the anomaly scorer's model files); this module only
asks each of them, without starting anything (the port is bound and let go; the spool directory is made
if it is missing, as `run` would)."""

from __future__ import annotations

from engines import spec as espec
from streamer.config import Config, http_settings
from streamer.detect.anomaly import EVENT as ANOMALY
from streamer.detect.anomaly import normality_problem
from streamer.detect.events import threshold_errors
from streamer.detect.loudness import EVENT as LOUD
from streamer.errors import ConfigError


def model_spec(cfg: Config) -> espec.ModelSpec:
    """The model's spec, or a ConfigError with one line per rule the config breaks against it: the model
    file, the window length, threshold class names, a class called `anomaly` or `loud`."""
    model = cfg.engine.model or str(espec.DEFAULT_MODEL)
    try:
        spec = espec.load_spec(model)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"engine.model: {e}") from None
    bad = []
    if abs(cfg.window.seconds - spec.window_seconds) > 1e-9:
        bad.append(f"window.seconds: {cfg.window.seconds:g} does not match the model's window of {spec.window_seconds:g} s ({model})")
    bad += threshold_errors(cfg, spec.classes)
    if cfg.anomaly.enabled and ANOMALY in spec.classes:
        bad.append(f"anomaly.enabled: the model has a class called {ANOMALY!r}; set anomaly.enabled: false")
    if LOUD in spec.classes and (cfg.detect.loudness or any(c.loudness for c in cfg.cameras)):
        bad.append(f"detect.loudness: the model has a class called {LOUD!r}; the loudness event cannot have its name")
    if bad:
        raise ConfigError("\n".join(bad))
    return spec


def _http(cfg: Config) -> list[str]:
    from streamer.web.server import bind, token_problem

    http = http_settings(cfg)
    if not http.port:
        return []
    problem = token_problem(http.host, http.token)
    if problem:
        return [problem]
    try:
        bind(http.host, http.port).close()
    except ConfigError as e:
        return [str(e)]
    return []


def _one(rule) -> list[str]:
    try:
        rule()
    except ConfigError as e:
        return str(e).splitlines()
    return []


def problems(cfg: Config) -> list[str]:
    """Every start-up rule `cfg` breaks, one line each (empty: `streamer run` would start)."""
    from streamer.outputs.spool import usable_dir

    out = _http(cfg) + _one(lambda: model_spec(cfg)) + _one(lambda: usable_dir(cfg.redis.spool_dir))
    out += [p for c in cfg.cameras if (p := normality_problem(cfg, c))]
    return out


def check(cfg: Config, source: str) -> None:
    """ConfigError listing every problem, each line prefixed with `source` (the file)."""
    bad = problems(cfg)
    if bad:
        raise ConfigError("\n".join(f"{source}: {b}" for b in bad))
