#!/bin/sh
# Entry point of the GPU image: `run CONFIG [...]` builds (or finds in $STREAMER_ENGINE_CACHE) the
# TensorRT engine for the config's model, engine.max_batch and engine.precision, then runs streamer
# (int8 also needs calibration windows: build that engine beforehand with `streamer engine build --calib`).
# Any other command is passed to streamer as it is.
set -e
if [ "$1" = run ] && [ -n "$2" ]; then
    # the precision to build, or nothing when the config's engine.backend is not auto/tensorrt
    precision=$(python3 -c 'import sys; from streamer.config import load_config; e = load_config(sys.argv[1]).engine
print(e.precision if e.backend in ("auto", "tensorrt") else "")' "$2")
    if [ -n "$precision" ]; then
        streamer engine build --config "$2" --precision "$precision"
    fi
fi
exec streamer "$@"
