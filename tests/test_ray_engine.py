"""The Ray engine on a local Ray instance: the same outputs, byte for byte, as the local engine;
failing files, --skip-existing, --gt scoring and resource checks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import natural_like
from lmfn_cli.batch import BatchOptions, Settings, run_batch
from lmfn_cli.cli import main
from lmfn_cli.errors import ConfigError
from lmfn_cli.images import write_image

ray = pytest.importorskip("ray")  # in the test extra; `pip install 'lmfn[ray]'` for users
from lmfn_cli.engines.ray import RayEngine, RayOptions, require_ray  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray(request):
    require_ray()
    try:  # the local S3 store first: the workers must inherit its AWS_* variables
        request.getfixturevalue("s3_store")
    except pytest.skip.Exception:
        pass
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_outputs_are_byte_identical_to_the_local_engines(tmp_path, photos, tiny_model):
    blur, sharp = photos
    local = run_batch([str(blur)], tmp_path / "local", BatchOptions(gt_dir=sharp), model=tiny_model)
    on_ray = run_batch([str(blur)], tmp_path / "ray", BatchOptions(gt_dir=sharp), model=tiny_model,
                       engine=RayEngine(RayOptions(address="auto", workers=1)))
    a, b = list(local), list(on_ray)
    assert [(Path(r.input).name, r.status, r.error, r.psnr, r.ssim) for r in a] == \
           [(Path(r.input).name, r.status, r.error, r.psnr, r.ssim) for r in b]
    assert on_ray.summary.ok == 5 and on_ray.summary.failed == 1
    assert {k: on_ray.summary.scores[k] for k in ("images", "psnr", "ssim")} == \
           {k: local.summary.scores[k] for k in ("images", "psnr", "ssim")}
    for out in sorted((tmp_path / "local").iterdir()):
        assert (tmp_path / "ray" / out.name).read_bytes() == out.read_bytes(), out.name
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == sorted(p.name for p in (tmp_path / "local").iterdir())


def test_two_workers_and_a_skip_existing_rerun(tmp_path, photos, tiny_model):
    blur, _ = photos
    engine = RayEngine(RayOptions(address="auto", workers=2, cpus_per_worker=0.5))
    first = list(run_batch([str(blur)], tmp_path / "out", BatchOptions(), model=tiny_model, engine=engine))
    assert sorted(r.status for r in first) == ["failed"] + ["ok"] * 5
    (tmp_path / "out" / "p1.png").unlink()

    again = run_batch([str(blur)], tmp_path / "out", BatchOptions(settings=Settings(skip_existing=True)), model=tiny_model,
                      engine=engine)
    by_name = {Path(r.input).name: r.status for r in again}
    assert by_name == {"p0.png": "skipped", "p1.png": "ok", "p2.png": "skipped", "p3.png": "skipped",
                       "deep.png": "skipped", "broken.png": "failed"}
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temporary left


def test_resources_the_cluster_lacks_are_a_clear_error(tmp_path, photos, tiny_model):
    blur, _ = photos
    for options, message in ((RayOptions(address="auto", gpus_per_worker=1), "needs 1 GPUs; the cluster has 0"),
                             (RayOptions(address="auto", workers=2), "leaves no CPU for reading files")):
        with pytest.raises(ConfigError, match=message):
            list(run_batch([str(blur)], tmp_path / "out", BatchOptions(), model=tiny_model, engine=RayEngine(options)))
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_the_command(tmp_path, photos, tiny_weights):
    blur, _ = photos
    runner = CliRunner()
    res = runner.invoke(main, ["deblur", str(blur), "-o", str(tmp_path / "out"), "-w", str(tiny_weights), "--json",
                               "--engine", "ray", "--ray-address", "auto"])
    assert res.exit_code == 1, res.output
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert sorted(r["status"] for r in records) == ["failed"] + ["ok"] * 5
    errors = [line for line in res.stderr.splitlines() if line.startswith("lmfn: error:")]
    assert len(errors) == 1 and "broken.png" in errors[0]
    gpu = runner.invoke(main, ["deblur", str(blur), "-o", str(tmp_path / "o2"), "-w", str(tiny_weights),
                               "--engine", "ray", "--ray-address", "auto", "--gpus-per-worker", "1"])
    assert gpu.exit_code == 2 and "GPUs; the cluster has 0" in gpu.stderr
    local = runner.invoke(main, ["deblur", str(blur), "-o", str(tmp_path / "o3"), "--workers", "2"])
    assert local.exit_code == 2 and "need --engine ray" in local.output


def test_without_ray_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"lmfn\[ray\]"):
        require_ray()


def test_an_interrupted_driver_stops_the_workers_and_leaves_only_complete_files(tmp_path, tiny_model):
    import time

    from lmfn_cli.images import read_picture

    for i in range(12):
        write_image(tmp_path / "in" / f"q{i:02d}.png", natural_like(96, 128, seed=i))
    batch = run_batch([str(tmp_path / "in")], tmp_path / "out", BatchOptions(), model=tiny_model,
                      engine=RayEngine(RayOptions(address="auto", workers=1)))
    with pytest.raises(KeyboardInterrupt):
        for record in batch:
            raise KeyboardInterrupt  # Ctrl-C after the first image
    time.sleep(3)
    written = sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith("."))
    time.sleep(3)
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == written  # stopped
    assert 1 <= len(written) < 12
    for name in written:
        assert read_picture(tmp_path / "out" / name).pixels.shape == (96, 128, 3)  # complete, decodable


def test_a_worker_that_dies_is_restarted_and_the_run_finishes(tmp_path, photos, tiny_model, monkeypatch):
    import os

    import ray.cloudpickle

    from lmfn_cli.engines.ray import Deblurrer

    marker = tmp_path / "died-once"

    class DiesOnce(Deblurrer):
        def __call__(self, rows):
            if not marker.exists():
                marker.write_text("x")
                os._exit(1)  # the worker process dies mid-batch
            return super().__call__(rows)

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test file
    blur, _ = photos
    records = list(run_batch([str(blur)], tmp_path / "out", BatchOptions(), model=tiny_model,
                             engine=RayEngine(RayOptions(address="auto"), actor_class=DiesOnce)))
    assert marker.exists()  # it did die
    assert sorted(r.status for r in records) == ["failed"] + ["ok"] * 5  # and every image was still done


def test_s3_inputs_and_outputs_give_the_local_engines_bytes(tmp_path, photos, tiny_model, s3_store):
    from lmfn_cli.uris import URI

    blur, sharp = photos
    prefix = f"s3://{s3_store}/ray-{tmp_path.name}"
    for folder, name in ((blur, "in"), (sharp, "sharp")):
        for p in folder.iterdir():
            fs, path = URI(f"{prefix}/{name}/{p.name}").filesystem()
            with fs.open_output_stream(path) as f:
                f.write(p.read_bytes())
    local = list(run_batch([str(blur)], tmp_path / "local", BatchOptions(gt_dir=sharp), model=tiny_model))
    engine = RayEngine(RayOptions(address="auto", workers=1))
    on_ray = list(run_batch([f"{prefix}/in/"], f"{prefix}/out", BatchOptions(gt_dir=f"{prefix}/sharp"), model=tiny_model,
                            engine=engine))
    assert [(Path(r.input).name, r.status, r.error, r.psnr, r.ssim) for r in local] == \
           [(r.input.rsplit("/", 1)[1], r.status, r.error.replace(prefix + "/in", str(blur)) if r.error else None,
             r.psnr, r.ssim) for r in on_ray]
    assert sum(r.truth is not None for r in on_ray) == 4 and on_ray[-1].truth.startswith(f"{prefix}/sharp/")
    assert on_ray[0].input == f"{prefix}/in/broken.png"
    for out in (tmp_path / "local").iterdir():
        assert URI(f"{prefix}/out/{out.name}").read_bytes() == out.read_bytes(), out.name
    fs, path = URI(f"{prefix}/out").filesystem()
    import pyarrow.fs

    names = sorted(i.base_name for i in fs.get_file_info(pyarrow.fs.FileSelector(path)))
    assert names == sorted(p.name for p in (tmp_path / "local").iterdir())  # no temporary left

    again = list(run_batch([f"{prefix}/in/"], f"{prefix}/out", BatchOptions(settings=Settings(skip_existing=True)),
                           model=tiny_model, engine=engine))
    assert sorted(r.status for r in again) == ["failed"] + ["skipped"] * 5


def test_inputs_from_two_filesystems_are_refused(tmp_path, photos, tiny_model, s3_store):
    blur, _ = photos
    with pytest.raises(ConfigError, match="one filesystem at a time"):
        list(run_batch([str(blur / "p0.png"), f"file://{blur}/p1.png"], tmp_path / "out", BatchOptions(),
                       model=tiny_model, engine=RayEngine(RayOptions(address="auto"))))


def test_a_ray_started_here_binds_no_dashboard_and_sends_no_usage_stats(monkeypatch):
    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.delenv("RAY_USAGE_STATS_ENABLED", raising=False)
    for address in (None, "auto"):
        RayEngine(RayOptions(address=address)).connect()
    assert [c["include_dashboard"] for c in calls] == [False, False]
    assert "address" not in calls[0] and calls[1]["address"] == "auto"
    import os

    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"


def test_ctrl_c_on_the_command_stops_the_run_with_exit_130_and_only_complete_files(tmp_path, tiny_weights):
    """A real SIGINT to a real `lmfn deblur --engine ray` that starts its own Ray."""
    import os
    import signal
    import subprocess
    import time

    from lmfn_cli.images import read_picture

    # enough images that the run is still going when the first output appears, even on a loaded
    # 2-core machine where Ray writes its first outputs late (with 60 the run once finished first)
    count = 300
    for i in range(count):
        write_image(tmp_path / "in" / f"q{i:03d}.png", natural_like(128, 160, seed=i % 60))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "lmfn_cli", "deblur", str(tmp_path / "in"), "-o", str(out),
                             "-w", str(tiny_weights), "--engine", "ray", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "RAY_ADDRESS": ""})
    deadline = time.monotonic() + 240
    while not (out.exists() and any(not p.name.startswith(".") for p in out.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    written = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    time.sleep(3)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == written  # the workers stopped
    assert 1 <= len(written) < count
    for name in written:
        assert read_picture(out / name).pixels.shape == (128, 160, 3)  # complete, decodable
