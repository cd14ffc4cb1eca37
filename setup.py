"""Build hook: put the default weights from weights/ into the wheel, as lmfn_cli/bundled/FILE.

Two files: the blind network's default and the kernel method's non-blind stage.

The file stays in the repository's weights/ (one copy in git); building copies it into the
build's package folder, so `pip install .` gives an lmfn that deblurs with no network. Editable
installs skip the copy: lmfn_cli.weights.bundled_path() finds the file in weights/ itself.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# lmfn_cli.weights.REGISTRY's default entry and kernel_method.NONBLIND_NAME's
BUNDLED_WEIGHTS = ("lmfn-synthblur-v2.safetensors", "lmfn-nonblind-v2.safetensors")


class BuildPyWithWeights(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for name in BUNDLED_WEIGHTS:
            source = ROOT / "weights" / name
            if not source.is_file():
                raise SystemExit(f"error: {source} is missing; the wheel must carry the default weights")
            target = Path(self.build_lib) / "lmfn_cli" / "bundled" / name
            self.mkpath(str(target.parent))
            self.copy_file(str(source), str(target))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if not getattr(self, "editable_mode", False):
            outputs += [str(Path(self.build_lib) / "lmfn_cli" / "bundled" / name) for name in BUNDLED_WEIGHTS]
        return outputs


setup(cmdclass={"build_py": BuildPyWithWeights})
