"""Build hook: put the default weights from weights/ into the wheel, as lmfn_cli/bundled/FILE.

The file stays in the repository's weights/ (one copy in git); building copies it into the
build's package folder, so `pip install .` gives an lmfn that deblurs with no network. Editable
installs skip the copy: lmfn_cli.weights.bundled_path() finds the file in weights/ itself.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DEFAULT_WEIGHTS = "lmfn-synthblur-v2.safetensors"  # lmfn_cli.weights.REGISTRY's default entry


class BuildPyWithWeights(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        source = ROOT / "weights" / DEFAULT_WEIGHTS
        if not source.is_file():
            raise SystemExit(f"error: {source} is missing; the wheel must carry the default weights")
        target = Path(self.build_lib) / "lmfn_cli" / "bundled" / DEFAULT_WEIGHTS
        self.mkpath(str(target.parent))
        self.copy_file(str(source), str(target))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if not getattr(self, "editable_mode", False):
            outputs.append(str(Path(self.build_lib) / "lmfn_cli" / "bundled" / DEFAULT_WEIGHTS))
        return outputs


setup(cmdclass={"build_py": BuildPyWithWeights})
