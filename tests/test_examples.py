from importlib import resources

import numpy as np
from click.testing import CliRunner

from conftest import requires_shared
from lmfn_cli.cli import main
from lmfn_cli.examples import generate
from lmfn_cli.images import read_image

NAMES = ("chart", "city", "text")


def _bundled(kind: str, name: str) -> np.ndarray:
    ref = resources.files("lmfn_cli.examples") / kind / f"{name}.png"
    with resources.as_file(ref) as path:
        return read_image(path)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return 10 * np.log10(255**2 / mse)


def test_bundled_examples_are_blurred_copies_of_their_sharp_scenes():
    for name in NAMES:
        sharp, blur = _bundled("sharp", name), _bundled("blur", name)
        assert sharp.shape == blur.shape == (240, 320, 3) and sharp.dtype == np.uint8
        assert 12 < _psnr(blur, sharp) < 30, name  # visibly blurred, still the same scene


def test_generator_reproduces_the_bundled_examples(tmp_path):
    generate.main(tmp_path)
    for name in NAMES:
        for kind in ("sharp", "blur"):
            made = read_image(tmp_path / kind / f"{name}.png").astype(int)
            # Exact with the Pillow that drew them; a newer font rasteriser may move a few pixels.
            assert np.abs(made - _bundled(kind, name)).mean() < 0.5, (kind, name)


def test_real_blurry_photo_goes_through_the_cli(tmp_path, tiny_weights):
    folder = requires_shared("data", "real-blurry", "lai2016")
    photo = sorted(folder.glob("*.jpg")) or sorted(folder.glob("*.png"))
    result = CliRunner().invoke(main, ["deblur", str(photo[0]), "-o", str(tmp_path), "-w", str(tiny_weights)])
    assert result.exit_code == 0, result.output
    assert read_image(tmp_path / photo[0].name).shape == read_image(photo[0]).shape
