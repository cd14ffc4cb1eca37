"""The before/after HTML report: what it holds, what it refuses, the records log and `lmfn report`.
(tests/test_report_browser.py opens it in a real browser.)"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import natural_like
from lmfn_cli.batch import BatchOptions, run_batch
from lmfn_cli.cli import main
from lmfn_cli.errors import NothingToDoError, OutputExistsError
from lmfn_cli.images import write_image
from lmfn_cli.report import changed_most, heat_map, read_record_log, records_log_path, write_html_report


def make_batch(root: Path, names=("a.png", "b.png", "c.png"), size=(48, 64)) -> tuple[Path, Path]:
    blur, sharp = root / "blur", root / "sharp"
    for i, name in enumerate(names):
        img = natural_like(*size, seed=i)
        write_image(sharp / name, img)
        shifted = ((img.astype(np.uint16) + np.roll(img, 2, axis=1)) // 2).astype(np.uint8)  # a 2 px smear
        write_image(blur / name, shifted)
    return blur, sharp


def srcs(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]*)"', html)


def test_changed_most_finds_the_changed_windows_without_overlap():
    before = np.zeros((100, 120, 3), np.uint8)
    after = before.copy()
    after[10:30, 80:100] = 200  # the biggest change
    after[60:70, 5:15] = 100
    found = changed_most(before, after, 20, 3)
    assert found[0] == (80, 10) and len(found) == 3
    x2, y2 = found[1]
    assert 0 <= x2 <= 5 + 9 and 50 <= y2 <= 60 + 9  # the window holding the second patch
    for (ax, ay), (bx, by) in [(found[0], found[1]), (found[0], found[2]), (found[1], found[2])]:
        assert abs(ax - bx) >= 20 or abs(ay - by) >= 20


def test_heat_map_is_dark_where_nothing_changed():
    before = np.zeros((8, 8, 3), np.uint8)
    after = before.copy()
    after[2, 3] = 90
    heat, scale = heat_map(before, after)
    assert heat.shape == (8, 8, 3) and heat.dtype == np.uint8
    assert heat[0, 0].sum() < 10 and heat[2, 3].sum() > 600 and scale >= 2


def test_a_scored_batch_report_is_one_self_contained_file(tmp_path, tiny_model):
    blur, sharp = make_batch(tmp_path)
    html_path = tmp_path / "out" / "report.html"
    batch = run_batch([str(blur)], tmp_path / "out", BatchOptions(gt_dir=sharp, html=html_path, command="lmfn deblur x"),
                      model=tiny_model, model_info={"name": "tiny", "sha256": "ab" * 32})
    list(batch)
    assert batch.summary.html == html_path
    html = html_path.read_text()
    # nothing but inline data and in-page anchors
    assert all(s.startswith(("data:image/", "#")) for s in srcs(html)) and len(srcs(html)) > 10
    assert "http://" not in html and "https://" not in html
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)[1]
    assert "default-src 'none'" in csp and "img-src data:" in csp
    for tag, kind in (("style", "style-src"), ("script", "script-src")):
        body = re.search(rf"<{tag}>(.*?)</{tag}>", html, re.S)[1]
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"{kind} 'sha256-{digest}'" in csp  # the inline code is allowed by hash, nothing else
    # header, one section per image, the table sorted by gain, the ground truth as a view
    assert "tiny" in html and "ab" * 32 in html and "lmfn deblur x" in html
    assert html.count('<section id="img') == 3 and html.count('class="compare"') == 3
    body = html[html.index("<tbody>"):html.index("</tbody>")]
    gains = [float(g) for g in re.findall(r'<td class="gain-(?:pos|neg)?">([+-][0-9.]+)</td>', body)]
    assert len(gains) == 3 and gains == sorted(gains, reverse=True)
    assert html.count('alt="ground truth:') == 3 and "200%" in html


def test_names_are_text_never_markup(tmp_path, tiny_model):
    blur, _ = make_batch(tmp_path, names=('a<b onmouseover="x">.png',))
    html_path = tmp_path / "r.html"
    list(run_batch([str(blur)], tmp_path / "out", BatchOptions(html=html_path), model=tiny_model))
    html = html_path.read_text()
    assert '<b onmouseover="x">' not in html and "a&lt;b onmouseover=&#34;x&#34;&gt;.png" in html


def test_max_images_shows_some_and_scores_all(tmp_path, tiny_model):
    blur, sharp = make_batch(tmp_path)
    list(run_batch([str(blur)], tmp_path / "out", BatchOptions(gt_dir=sharp, html=tmp_path / "r.html", html_max_images=1),
                   model=tiny_model))
    html = (tmp_path / "r.html").read_text()
    assert html.count('<section id="img') == 1 and html.count("<tr><td>") == 3
    assert "2 more image(s) are not shown" in html


def test_a_report_replaces_a_report_but_no_other_file(tmp_path, tiny_model):
    blur, _ = make_batch(tmp_path, names=("a.png",))
    mine = tmp_path / "notes.html"
    mine.write_text("<html>my notes</html>")
    log = records_log_path(tmp_path / "out")
    with pytest.raises(OutputExistsError, match="not an lmfn report"):
        list(run_batch([str(blur)], tmp_path / "out", BatchOptions(html=mine, records_log=log), model=tiny_model))
    assert mine.read_text() == "<html>my notes</html>"
    header, records = read_record_log(tmp_path / "out")
    write_html_report(tmp_path / "r.html", records, header)
    write_html_report(tmp_path / "r.html", records, header)  # an earlier report is replaced
    with pytest.raises(NothingToDoError):
        write_html_report(tmp_path / "r2.html", [r for r in records if r["status"] == "failed"], header)


def test_the_records_log_and_lmfn_report(tmp_path, tiny_weights):
    blur, sharp = make_batch(tmp_path)
    (blur / "broken.png").write_bytes(b"not a png")
    runner = CliRunner()
    first = runner.invoke(main, ["deblur", str(blur), "-o", str(tmp_path / "out"), "--gt", str(sharp),
                                 "-w", str(tiny_weights), "--device", "cpu", "--html", str(tmp_path / "out" / "r.html")])
    assert first.exit_code == 1 and "lmfn: report: " in first.stderr
    again = runner.invoke(main, ["deblur", str(blur), "-o", str(tmp_path / "out"), "--skip-existing",
                                 "-w", str(tiny_weights), "--device", "cpu"])
    assert again.exit_code == 1
    lines = [json.loads(line) for line in records_log_path(tmp_path / "out").read_text().splitlines()]
    assert [e["kind"] for e in lines].count("batch") == 2 and all(Path(e["input"]).is_absolute() for e in lines
                                                                  if e["kind"] == "record")
    header, records = read_record_log(tmp_path / "out")
    by_name = {Path(r["input"]).name: r for r in records}
    assert by_name["a.png"]["status"] == "ok" and by_name["a.png"]["ssim"] is not None  # the skip kept the scored run
    assert by_name["broken.png"]["status"] == "failed" and "--skip-existing" in header["command"]
    made = runner.invoke(main, ["report", str(tmp_path / "out")])
    assert made.exit_code == 0 and made.stdout.strip() == str(tmp_path / "out" / "report.html")
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count('<section id="img') == 3 and html.count("<tr><td>") == 3
    empty = runner.invoke(main, ["report", str(tmp_path)])
    assert empty.exit_code == 1 and "no lmfn deblur batch was run into this folder" in empty.stderr
    # the log is kept outside OUT, which holds only the outputs (and here the report asked for)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png", "c.png", "r.html", "report.html"]


def test_records_logs_are_named_for_their_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("LMFN_STATE_DIR", str(tmp_path / "state"))
    a, b = records_log_path(tmp_path / "x" / "out"), records_log_path(tmp_path / "y" / "out")
    assert a != b and a.parent == b.parent == tmp_path / "state" / "batches" and a.name.startswith("out-")
    assert records_log_path("rel") == records_log_path(Path("rel").resolve())
