"""Synthetic (blurry, sharp) training pairs from sharp photos, every sample reproducible from a seed.

All images are float32 (H,W,3) RGB in [0,1] unless a docstring says otherwise; "sRGB" means
gamma-encoded pixel values as stored in files, "linear" means linear light (the sRGB curve
inverted). Kernels are float32 (k,k) arrays with k odd, non-negative, summing to 1, centred on
the middle pixel. Point coordinates are (x, y) in pixels, pixel centres at integers.

``synthesize_pair`` runs, in this order (the physically sensible one):

    sharp sRGB -> crop (with a margin of real pixels around it, so borders are not padding)
    -> linear light
    -> sometimes: highlights scaled above 1, the radiance a camera would have clipped
    -> blur in linear light (light adds up in linear light, not in sRGB), by one source of
       trajectory   random camera-shake kernel (Boracchi & Foi 2012, DeblurGAN's generator)
       usrnet       one of USRNet's 12 kernels (Gaussian and motion), randomly rotated/flipped
       gyro         a real phone gyroscope recording (Lai et al. 2016) -> uniform kernel
       gyro_homography  the same recording -> per-pixel (spatially varying) blur incl. roll
       camera_path  a smooth random 6-D camera path -> per-pixel blur via homographies
       none         no blur
    -> Poisson-Gaussian noise in linear light (where a raw sensor's noise lives)
    -> clip to [0,1] (sensor saturation) -> sRGB -> sometimes JPEG (in memory, Pillow)

The sharp target is the same crop with the same highlight scaling and clipping, no noise and
no JPEG, so the pair differs only by what a deblurring network should undo or tolerate.

Blur paths are centred (kernels by their centroid, homographies relative to the mean camera
pose), so blurry and sharp stay aligned and a network is not taught to shift images.

Paths to data are never baked in: pass a ``KernelBank`` (``KernelBank.from_dir``) for the USRNet
kernels and gyro recordings; sources whose data is absent are left out of the mixture.

The modules, one subject each (everything public is importable from here):

    color     sRGB transfer curves; images to/from float32 RGB
    kernels   camera-shake trajectories -> kernels, centring, the 8 rotations/flips
    matfile   a small MATLAB v5 reader; USRNet's kernels_12.mat
    motion    gyro recordings and 6-D camera paths -> kernels or homographies
    blur      blurring by a kernel (FFT) or by homographies (per pixel)
    frames    real blur by averaging video frames (GoPro style)
    degrade   noise, highlights, tone curve, JPEG
    pairs     the mixture (SynthConfig, KernelBank), synthesize_pair, make_pairs
"""

from .blur import blur_with_homographies, blur_with_kernel
from .color import _to_float_rgb, linear_to_srgb, srgb_to_linear
from .degrade import (
    Degradation,
    add_poisson_gaussian_noise,
    add_zero_mean_noise,
    apply_degradation,
    boost_highlights,
    jpeg_roundtrip,
)
from .frames import average_frames, frame_sequence_pairs, make_frame_pairs
from .kernels import (
    _check_kernel_size,
    _dihedral,
    centre_kernel,
    random_kernel,
    random_trajectory,
    trajectory_kernel,
)
from .matfile import load_usrnet_kernels
from .motion import GyroRecording, camera_path_homographies, gyro_homographies, gyro_kernel, load_gyro
from .pairs import (
    HELD_OUT_GYRO,
    HELD_OUT_USRNET,
    SOURCES,
    KernelBank,
    SynthConfig,
    make_pairs,
    synthesize_pair,
)

__all__ = [
    "SOURCES",
    "srgb_to_linear",
    "linear_to_srgb",
    "random_trajectory",
    "trajectory_kernel",
    "random_kernel",
    "centre_kernel",
    "load_usrnet_kernels",
    "GyroRecording",
    "load_gyro",
    "gyro_kernel",
    "gyro_homographies",
    "camera_path_homographies",
    "blur_with_kernel",
    "blur_with_homographies",
    "average_frames",
    "frame_sequence_pairs",
    "Degradation",
    "add_poisson_gaussian_noise",
    "add_zero_mean_noise",
    "boost_highlights",
    "jpeg_roundtrip",
    "apply_degradation",
    "SynthConfig",
    "KernelBank",
    "synthesize_pair",
    "make_pairs",
    "make_frame_pairs",
]

# Not in __all__, but used from this package by other modules and tests (HELD_OUT_* by tests,
# the private helpers by lmfn_cli.gpu_synth and tests); listing them marks the imports as re-exports.
_REEXPORTED = (HELD_OUT_USRNET, HELD_OUT_GYRO, _check_kernel_size, _dihedral, _to_float_rgb)
