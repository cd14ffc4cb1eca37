"""Coverage-guided fuzzing of ``read_picture`` with atheris (libFuzzer for Python).

    pip install atheris            # or: pip install -e ".[fuzz]"
    python benchmarks/fuzz_atheris.py --seconds 600 [--seed 1] [--corpus DIR] [--crashes DIR]

Where ``benchmarks/fuzz.py`` mutates blindly, libFuzzer keeps every input that reaches new code
and mutates those: it finds the branches a parser has behind a checksum or a length field. The
corpus starts from ``fuzz.py``'s seeds (every format we read) and its structured cases (bombs,
lying headers). Python code is instrumented for coverage: ``lmfn_cli`` and the Python decoders
(Pillow's plugins, tifffile); the C decoders inside Pillow and imagecodecs run uninstrumented,
so their crashes (a dead process) are still caught, but their branches do not guide the search.

A case passes when ``read_picture`` returns a picture or raises ``ImageError``; any other
exception, a hang past ``--timeout`` or more than ``--rss-mb`` of memory is a crash: libFuzzer
stops, writes the input to ``--crashes`` (``crash-SHA1``/``timeout-``/``oom-``) and this script
exits 1. Make each one a regression test in ``tests/fuzz/test_fuzz.py``. The report (stdout):
inputs run, executions per second, coverage (libFuzzer's edge and feature counts), corpus size,
peak RSS, crashes.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LEN = 64 * 1024  # bytes per input: the seeds are at most ~12 KiB; room for growth


def _load_fuzz_module():
    spec = importlib.util.spec_from_file_location("lmfn_fuzz_seeds", Path(__file__).with_name("fuzz.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_corpus(folder: Path) -> int:
    """Write the seeds and the structured cases of ``fuzz.py`` into ``folder``; returns how many."""
    fuzz = _load_fuzz_module()
    folder.mkdir(parents=True, exist_ok=True)
    items = {**fuzz.seeds(), **fuzz.structured()}
    for name, (_, data) in items.items():
        (folder / f"seed-{name}").write_bytes(data[:MAX_LEN])
    return len(items)


# --------------------------------------------------------------------------------------------
# The fuzz target (runs in the child process, under libFuzzer)
# --------------------------------------------------------------------------------------------


def _target_main(argv: list[str]) -> None:
    import logging

    import atheris

    logging.disable(logging.CRITICAL)  # decoders' warnings would flood libFuzzer's output
    with atheris.instrument_imports(include=["lmfn_cli", "PIL", "tifffile"]):
        import PIL.Image

        from lmfn_cli.errors import ImageError
        from lmfn_cli.images import read_picture

        PIL.Image.init()  # import every Pillow plugin now, so that they are instrumented

    # The harness's own check (tests/fuzz): a target that fails on any PNG must be reported.
    planted = os.environ.get("LMFN_FUZZ_PLANTED_BUG") == "1"

    def one_input(data: bytes) -> None:
        if planted and data.startswith(b"\x89PNG"):
            raise RuntimeError("planted bug")
        try:
            read_picture(data, name="fuzz-case")
        except ImageError:
            pass

    atheris.Setup(argv, one_input)
    atheris.Fuzz()


# --------------------------------------------------------------------------------------------
# The driver: run libFuzzer in a child, read its statistics
# --------------------------------------------------------------------------------------------


_STATUS = re.compile(r"^#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+).*?exec/s: (\d+) rss: (\d+)Mb")
_STAT = re.compile(r"^stat::(\w+):\s+(\d+)")


def parse_libfuzzer(log: str) -> dict:
    """The last status line and the final ``stat::`` figures of a libFuzzer log."""
    out: dict = {}
    for line in log.splitlines():
        m = _STATUS.match(line)
        if m:
            out.update(inputs=int(m[1]), event=m[2], cov=int(m[3]), ft=int(m[4]), corpus=int(m[5]),
                       corpus_size=m[6], exec_per_s=int(m[7]), rss_mb=int(m[8]))
        m = _STAT.match(line)
        if m:
            out[m[1]] = int(m[2])
    return out


def campaign(seconds: int, seed: int, corpus: Path, crashes: Path, timeout: int, rss_mb: int,
             runs: int = -1) -> dict:
    """Fuzz for ``seconds`` (or ``runs`` inputs); returns libFuzzer's figures, the crash files
    and the child's log."""
    crashes.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in crashes.iterdir()}
    args = [sys.executable, str(Path(__file__).resolve()), "--target", "--", str(corpus),
            f"-max_total_time={seconds}", f"-seed={seed}", f"-timeout={timeout}", f"-rss_limit_mb={rss_mb}",
            f"-malloc_limit_mb={rss_mb}", f"-max_len={MAX_LEN}", f"-artifact_prefix={crashes}{os.sep}",
            "-print_final_stats=1", f"-runs={runs}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    # atheris prints the Python traceback of a crash on stdout, libFuzzer its figures on stderr
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, errors="replace")
    res = parse_libfuzzer(proc.stdout)
    res.update(returncode=proc.returncode, wall_s=round(time.perf_counter() - t0, 1),
               crashes=sorted(p.name for p in crashes.iterdir() if p.name not in before), log=proc.stdout)
    return res


def main() -> int:
    if "--target" in sys.argv:
        i = sys.argv.index("--target")
        rest = sys.argv[i + 2:] if sys.argv[i + 1:i + 2] == ["--"] else sys.argv[i + 1:]
        _target_main([sys.argv[0], *rest])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=600, help="how long to fuzz")
    ap.add_argument("--runs", type=int, default=-1, help="stop after this many inputs instead (-1: no limit)")
    ap.add_argument("--seed", type=int, default=1, help="libFuzzer's random seed")
    ap.add_argument("--corpus", type=Path, help="corpus folder, kept and grown between runs [default: a temporary one]")
    ap.add_argument("--crashes", type=Path, default=Path("fuzz-crashes"), help="where crashing inputs are written")
    ap.add_argument("--timeout", type=int, default=20, help="seconds per input before it counts as a hang")
    ap.add_argument("--rss-mb", type=int, default=3072, help="memory per input before it counts as a crash")
    ap.add_argument("--log", type=Path, help="write libFuzzer's whole log here")
    args = ap.parse_args()
    if importlib.util.find_spec("atheris") is None:
        print("fuzz_atheris: atheris is not installed: pip install atheris", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus or Path(tmp) / "corpus"
        n_seeds = write_corpus(corpus)
        res = campaign(args.seconds, args.seed, corpus, args.crashes, args.timeout, args.rss_mb, args.runs)
        n_corpus = sum(1 for _ in corpus.iterdir())
    if args.log:
        args.log.write_text(res["log"])
    print(f"# atheris: read_picture, {res['wall_s']} s, libFuzzer seed {args.seed}\n")
    print(f"- inputs run: {res.get('number_of_executed_units', res.get('inputs', 0)):,} "
          f"({res.get('average_exec_per_sec', res.get('exec_per_s', 0))}/s)")
    print(f"- coverage: {res.get('cov', '?')} edges, {res.get('ft', '?')} features "
          f"(Python code of lmfn_cli, Pillow, tifffile)")
    print(f"- corpus: {n_seeds} seeds grew to {n_corpus} inputs")
    print(f"- peak RSS: {res.get('peak_rss_mb', res.get('rss_mb', '?'))} MiB")
    print(f"- crashes: {len(res['crashes'])}" + "".join(f"\n  - {args.crashes / c}" for c in res["crashes"]))
    if res["crashes"]:
        tail = "\n".join(res["log"].splitlines()[-40:])
        print(f"\nlibFuzzer's last lines:\n```\n{tail}\n```")
    return 1 if res["crashes"] or res["returncode"] not in (0,) else 0


if __name__ == "__main__":
    sys.exit(main())
