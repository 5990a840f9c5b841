#!/usr/bin/env bash
# The main job on the embedded default. Until training lands, it describes the default model.
set -euo pipefail
cd "$(dirname "$0")/.."
build/release/fela info --config tiny
