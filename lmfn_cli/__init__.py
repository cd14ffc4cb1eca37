"""lmfn: remove motion blur from photos with LMFN, a 1.25M-parameter deblurring network.

Library use::

    from lmfn_cli import load_model, deblur
    model = load_model("weights/some.safetensors")
    sharp = deblur(model, blurry)        # numpy HxWx3 uint8/uint16/float -> same shape and dtype
"""

__version__ = "0.1.0.dev0"

from .errors import ConfigError, ImageError, LMFNError, NoWeightsError, WeightsError  # noqa: E402
from .inference import deblur, resolve_device  # noqa: E402
from .model import LMFN, VARIANTS, LMFNConfig, build_model, count_parameters  # noqa: E402
from .weights import load_model, read_weights, save_weights  # noqa: E402

__all__ = [
    "__version__",
    "LMFN",
    "LMFNConfig",
    "VARIANTS",
    "build_model",
    "count_parameters",
    "load_model",
    "save_weights",
    "read_weights",
    "deblur",
    "resolve_device",
    "LMFNError",
    "ConfigError",
    "WeightsError",
    "NoWeightsError",
    "ImageError",
]
