"""lmfn: remove motion blur from photos with LMFN, a 1.25M-parameter deblurring network.

Library use::

    from lmfn_cli import load_model, deblur
    model = load_model()                 # the bundled default weights (or a file, or name=...)
    sharp = deblur(model, blurry)        # numpy HxWx3 uint8/uint16/float -> same shape and dtype

    from lmfn_cli import read_picture, write_picture
    picture = read_picture("photo.tif")  # pixels (16-bit stays 16-bit), ICC profile, EXIF

    from lmfn_cli import estimate_kernel, deblur_by_kernel, read_kernel
    kernel = estimate_kernel(blurry / 255).kernel   # (k,k) float32 blur kernel, sums to 1
    sharp = deblur_by_kernel(blurry, kernel, method="tv")
"""

__version__ = "0.1.0.dev0"

from .errors import (  # noqa: E402
    ConfigError, DownloadError, ImageError, KernelError, LMFNError, NoWeightsError, UnknownWeightsError, WeightsError,
)
from .images import Picture, read_picture, write_picture  # noqa: E402
from .inference import deblur, resolve_device, restore  # noqa: E402
from .kernel_estimation import EstimationSettings, KernelEstimate, estimate_kernel  # noqa: E402
from .kernel_files import read_kernel, write_kernel  # noqa: E402
from .kernel_method import (KernelOptions, NonblindStage, deblur_by_kernel, deconvolve_with_network,  # noqa: E402
                            load_nonblind, restore_with_method)
from .model import LMFN, VARIANTS, LMFNConfig, build_model, count_parameters  # noqa: E402
from .weights import REGISTRY, load_model, read_weights, resolve_weights, save_weights  # noqa: E402

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
    "resolve_weights",
    "REGISTRY",
    "deblur",
    "restore",
    "resolve_device",
    "Picture",
    "read_picture",
    "write_picture",
    "LMFNError",
    "ConfigError",
    "WeightsError",
    "NoWeightsError",
    "DownloadError",
    "UnknownWeightsError",
    "ImageError",
    "KernelError",
    "estimate_kernel",
    "EstimationSettings",
    "KernelEstimate",
    "read_kernel",
    "write_kernel",
    "deblur_by_kernel",
    "KernelOptions",
    "NonblindStage",
    "load_nonblind",
    "deconvolve_with_network",
    "restore_with_method",
]
