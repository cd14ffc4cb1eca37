"""benchmarks/faults.py on a small scale: kill -9 during a batch leaves only complete images, and
the next --skip-existing run completes it with no temporary file left (the 50-kill run is in the
README)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("faults", ROOT / "benchmarks" / "faults.py")
faults = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(faults)


def test_kills_leave_only_complete_images_and_the_next_run_finishes(tmp_path):
    s = faults.kills(2, 6, seed=7, work=tmp_path)
    assert s["kills"] + s["run_had_finished"] == 2
    assert s["problems"] == [] and s["temporaries_after_next_run"] == 0
    assert s["final_exit_code"] == 0 and s["outputs_after_next_run"] == 6


def test_check_out_finds_partial_and_unexpected_files(tmp_path):
    from lmfn_cli.images import write_image

    write_image(tmp_path / "a.png", faults._image(8, 8, 0))
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n half")
    (tmp_path / "c.png").write_bytes(b"")
    (tmp_path / ".a.png.lmfn-h-1.x.part").write_bytes(b"")
    problems, temporaries = faults.check_out(tmp_path, {"a.png", "b.png"})
    assert temporaries == [".a.png.lmfn-h-1.x.part"]
    assert sorted(p.split()[0] for p in problems) == ["b.png", "unexpected"]
