"""Head yaw of face images by MediaPipe's face mesh: an external, evaluation-only reference.

    PYTHON_WITH_MEDIAPIPE benchmarks/mediapipe_yaw.py IMAGES.npy OUT.json

Runs in an environment of its own (`pip install mediapipe==0.10.21`: the face-mesh model ships in
the wheel, nothing is downloaded; it pins numpy < 2, so it does not share the project's venv).
Imports neither torch nor the package. IMAGES.npy: uint8 [N, H, W, 3] RGB. OUT.json: a list of N
entries, each the yaw in degrees or null where no face was found.

Yaw from the mesh's 3D contour points 234 and 454 (the two cheek outlines at the ears), in the x-z
plane: yaw = atan2(-(z454 - z234), x454 - x234). MediaPipe's z has roughly the scale of x (image
width) and grows away from the camera. The sign is the package's: yaw > 0 when the face turns towards
the image's left (the cheek on the image's right comes forward). bench_view_real.py checks the sign
and the scale on world faces of known yaw before it trusts the numbers on real ones. Good to about
+-45 degrees (beyond, the far cheek's contour is a guess).
"""
from __future__ import annotations

import json
import math
import sys

import cv2
import mediapipe as mp
import numpy as np

UPSCALE = 256  # the face mesh finds 32-92 px faces far more often once they are upscaled


def yaw_of(mesh, rgb: np.ndarray) -> float | None:
    img = cv2.resize(rgb, (UPSCALE, UPSCALE), interpolation=cv2.INTER_CUBIC)
    res = mesh.process(img)
    if not res.multi_face_landmarks:
        return None
    lm = res.multi_face_landmarks[0].landmark
    a, b = lm[234], lm[454]
    return math.degrees(math.atan2(-(b.z - a.z), b.x - a.x))


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    images = np.load(sys.argv[1])
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise SystemExit(f"{sys.argv[1]}: expected uint8 [N, H, W, 3], got {images.dtype} {images.shape}")
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, min_detection_confidence=0.3) as mesh:
        out = [yaw_of(mesh, np.ascontiguousarray(im)) for im in images]
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
