"""What tenfold more training would give, from weights that have seen different amounts of it.

    python benchmarks/steps_fit.py scratch/cand/table.json \\
        --steps lmfn-synthblur-v1=13534 --steps "lmfn-synthblur-v2 (shipped)=52490" --steps v3-last=58990

Reads the ``--json`` of ``benchmarks/validation.py`` and, for each row, fits the gain over the
blurry input against log10(steps seen) over the named weights (``lmfn_cli.curves.fit_log_steps``),
then prints the slope (dB per tenfold steps) and the gain it predicts at ten times the most
steps. Count steps in one unit (we use steps of 8 patches of 128x128: a step of batch 32 counts
4). The fit assumes one log-linear curve through weights trained with different recipes and data;
read it as an order of magnitude, not a promise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmfn_cli.curves import fit_log_steps  # noqa: E402


def parse_steps(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        name, _, n = item.rpartition("=")
        if not name or not n.isdigit():
            raise SystemExit(f"--steps {item!r}: expected NAME=STEPS")
        out[name] = int(n)
    return out


def fits(table: dict, steps: dict[str, int]) -> list[dict]:
    """Per row: the points (steps, gain over blurry), the fit and its prediction at 10x."""
    rows = []
    for row in table["rows"]:
        blurry = row["scores"]["blurry"]["psnr"]
        if not isinstance(blurry, (int, float)):  # identity: the input is the target ("inf"), no gain over it
            continue
        missing = [n for n in steps if n not in row["scores"]]
        if missing:
            raise SystemExit(f"{row['set']}: no column {missing} (columns: {', '.join(row['scores'])})")
        series = sorted((steps[n], row["scores"][n]["psnr"] - blurry) for n in steps)
        fit = fit_log_steps(series)
        most = series[-1][0]
        rows.append({"set": row["set"], "points": series, "slope_db_per_10x": fit.b, "rms_db": fit.rms,
                     "now": fit.predict(most), "at_10x": fit.predict(10 * most)})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table", type=Path, help="--json output of benchmarks/validation.py")
    ap.add_argument("--steps", action="append", required=True, help="COLUMN=STEPS (repeatable, two or more)")
    args = ap.parse_args()
    steps = parse_steps(args.steps)
    if len(steps) < 2:
        raise SystemExit("give --steps for two or more columns")
    print("| set | gain over blurry at (steps) | slope, dB per 10x steps | fit rms | predicted gain at 10x |")
    print("|---|---|---|---|---|")
    for r in fits(json.loads(args.table.read_text()), steps):
        pts = ", ".join(f"{g:+.2f} ({s:,})" for s, g in r["points"])
        print(f"| {r['set']} | {pts} | {r['slope_db_per_10x']:+.3f} | {r['rms_db']:.3f} | {r['at_10x']:+.2f} dB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
