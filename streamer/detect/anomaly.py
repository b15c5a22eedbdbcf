"""Per-camera anomaly scores in the pipeline: a normality model per camera, loaded or learned.

The ingest process finds the moving objects of each window's frames (`Window.objects`, see
streamer.detect.objects); here, in the main process, they are scored against the camera's normal ones.

At start each camera gets its model file (`cameras[].normality`, else `<anomaly.dir>/<id>.npz`); a file
that cannot be used is a ConfigError naming the camera and the file. A camera without a file learns
its normal from its first `anomaly.learn_minutes` of windows (NormalityLearner), saves it there, and is
scored from then on.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from streamer.config import CameraConfig, Config, learn_windows
from streamer.detect.normality import RELEARN, NormalityError, NormalityLearner, NormalityModel, camera_path
from streamer.errors import ConfigError

log = logging.getLogger(__name__)

EVENT = "anomaly"


def model_file(cfg: Config, cam: CameraConfig) -> Path:
    if cam.normality:
        return Path(cam.normality).expanduser()
    return camera_path(Path(cfg.anomaly.dir).expanduser(), cam.id)


def load_checked(camera: str, path: Path) -> NormalityModel:
    """The camera's model, or a ConfigError naming the camera and the file."""
    try:
        nm = NormalityModel.load(path)
    except (ValueError, OSError) as e:  # NormalityError, arrays of inconsistent shapes, a file it may not read
        hint = (f"learn it again with `streamer learn-normal --camera {camera} --from FILE_OR_URL`, or delete it "
                "to start a learning period")
        msg = str(e).replace(RELEARN, hint) if RELEARN in str(e) else f"{e} ({hint})"
        raise ConfigError(f"camera {camera}: cannot use normality model {path}: {msg}") from None
    if nm.camera and nm.camera != camera:
        log.warning("camera %s: normality model %s was learned for camera %s", camera, path, nm.camera)
    return nm


def normality_problem(cfg: Config, cam: CameraConfig) -> str | None:
    """Why the camera's normality model file stops the start, else None: a file that cannot be used and
    that no learning period may replace (one named in `normality`, or `anomaly.learn_minutes` 0)."""
    path = model_file(cfg, cam)
    if not cfg.anomaly.enabled or not path.exists() or not (cam.normality or not learn_windows(cfg)):
        return None
    try:
        load_checked(cam.id, path)
    except ConfigError as e:
        return str(e)
    return None


class AnomalyScorer:
    """`score(camera, objects)` -> (score, cell) or None (no model yet); learns where set to.
    `frames`: frames per window."""

    def __init__(self, cfg: Config, frames: int) -> None:
        self.models: dict[str, NormalityModel] = {}
        self.learners: dict[str, NormalityLearner] = {}
        self.cfg, self.frames = cfg, frames
        if not cfg.anomaly.enabled:
            return
        for cam in cfg.cameras:
            self.add(cam)

    def add(self, cam: CameraConfig) -> None:
        """Load the camera's model or start its learning period (also for a camera added at run time)."""
        cfg, windows = self.cfg, learn_windows(self.cfg)
        if not cfg.anomaly.enabled:
            return
        problem = normality_problem(cfg, cam)  # a file the user named, or no learning to replace it
        if problem:
            raise ConfigError(problem)
        path = model_file(cfg, cam)
        if path.exists():
            try:
                self.models[cam.id] = nm = load_checked(cam.id, path)
                log.info("camera %s: normality model %s (threshold %.3f)", cam.id, path, nm.threshold)
                return
            except ConfigError as e:
                # a file the pipeline learned itself, unusable now (e.g. an older kind): learn again
                stale = path.with_name(path.stem + ".stale.npz")
                path.replace(stale)
                log.warning("%s; moved it to %s and learning anew", e, stale)
        if windows:
            self.learners[cam.id] = NormalityLearner(cam.id, self.frames, windows, path, cfg.anomaly.far)
            log.info("camera %s: no normality model at %s; learning it from the first %g min (%d windows)",
                     cam.id, path, cfg.anomaly.learn_minutes, windows)

    def remove(self, camera: str) -> None:
        """A camera removed at run time: its model and learning period are dropped (a learning period is lost)."""
        self.models.pop(camera, None)
        self.learners.pop(camera, None)

    def progress(self, camera: str) -> float:
        """Learning progress in [0, 1]: 1 with a model, 0 without one and not learning."""
        if camera in self.models:
            return 1.0
        learner = self.learners.get(camera)
        return learner.progress if learner else 0.0

    def learn(self, camera: str, objects: np.ndarray) -> NormalityModel | None:
        """Feed a learning period; the model once it is learned (then it scores), else None."""
        learner = self.learners.get(camera)
        if learner is None:
            return None
        try:
            nm = learner.add(objects)
        except NormalityError as e:
            log.error("camera %s: learning its normal failed, no anomaly alerts: %s", camera, e)
            del self.learners[camera]
            return None
        except OSError as e:  # fitted, not saved: use it now, learn again at the next start
            log.error("camera %s: normality model not saved to %s: %s", camera, learner.path, e)
            nm = learner.model
        if nm is None:
            return None
        del self.learners[camera]
        self.models[camera] = nm
        log.info("camera %s: normal learned from %d windows (threshold %.3f); anomaly alerts on", camera,
                 nm.windows, nm.threshold)
        return nm

    def score(self, camera: str, objects: np.ndarray) -> tuple[float, dict[str, int] | None] | None:
        """The window's anomaly score and the cell {row, col, grid} of its worst object (None without objects)."""
        nm = self.models.get(camera)
        if nm is None:
            return None
        score, where = nm.score_window(objects)
        return score, None if where is None else {"row": where[0], "col": where[1], "grid": nm.grid}
