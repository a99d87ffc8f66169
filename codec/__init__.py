"""aecodec: a learned lossy image codec (runtime; never imports torch).

    import aecodec
    data = aecodec.compress(pixels, quality=75)      # uint8 H x W (x 2, 3, 4), or a PIL image
    pixels = aecodec.decompress(data)                # the stream names its model by id
    codec = aecodec.Codec("hyperprior", threads=2)   # keeps ONNX sessions open
    Image.open("x.aec"); im.save("x.aec", quality=60)  # the Pillow plugin, registered here
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _dist_version

try:
    __version__ = _dist_version("aecodec")
except PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "0+unknown"

from . import pillow_plugin  # noqa: F401 - registers the AEC format with Pillow
from .codec import (
    DEFAULT_QUALITY,
    Codec,
    Encoded,
    compress,
    decompress,
    stream_info,
)
from .errors import (
    AecodecError,
    CorruptStreamError,
    ImageTooLargeError,
    LossWarning,
    ModelError,
    ModelMismatchError,
    RateWarning,
    UnknownModelError,
    UnreadableImageError,
    UnsupportedImageError,
)
from .model import Model, ModelInfo
from .model import shipped as models

__all__ = [
    "DEFAULT_QUALITY",
    "AecodecError",
    "Codec",
    "CorruptStreamError",
    "Encoded",
    "ImageTooLargeError",
    "LossWarning",
    "Model",
    "ModelError",
    "ModelInfo",
    "ModelMismatchError",
    "RateWarning",
    "UnknownModelError",
    "UnreadableImageError",
    "UnsupportedImageError",
    "__version__",
    "compress",
    "decompress",
    "models",
    "stream_info",
]
