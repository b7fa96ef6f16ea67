"""Face restoration after upscaling, with the user's own GFPGAN or RestoreFormer checkpoint.

`restore_faces(original_rgb, upscaled_rgb, scale, restorer, detector)` is the step the pipeline
calls after upscaling; `MTCNN` finds faces (weights from the facenet-pytorch wheel);
`restorer_from_weights(weights_dir)` loads the face checkpoint found in ``weights/``, or raises
`FacesUnavailableError` whose message (`HOW_TO_ADD`) says how to add one. `FaceRestoration`
wraps all of it for one weights folder: what the pipeline, CLI and web app hold.
"""

from esrgan.faces.mtcnn import MTCNN, Face
from esrgan.faces.paste import restore_faces
from esrgan.faces.restorer import (
    HOW_TO_ADD,
    FaceRestorer,
    FaceRestorerError,
    FacesUnavailableError,
    find_face_checkpoint,
    load_restorer,
    restorer_from_weights,
)
from esrgan.faces.service import FaceRestoration
from esrgan.models.detect import FACE_ARCHS

__all__ = ["FACE_ARCHS", "HOW_TO_ADD", "MTCNN", "Face", "FaceRestoration", "FaceRestorer", "FaceRestorerError",
           "FacesUnavailableError", "find_face_checkpoint", "load_restorer", "restore_faces", "restorer_from_weights"]
