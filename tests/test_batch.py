"""batch.deblur_files: background decode/encode keeps the order, the errors and the outputs."""

from __future__ import annotations

import threading

import numpy as np

from lmfn_cli import batch
from lmfn_cli.batch import Job, Record, Settings, deblur_file, deblur_files
from lmfn_cli.errors import LMFNError, OutputExistsError
from lmfn_cli.images import read_image, write_image

from conftest import natural_like


def _jobs(tmp_path, n=4):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    jobs = []
    for i in range(n):
        write_image(src / f"p{i}.png", natural_like(40, 56, seed=i))
        jobs.append(Job(src / f"p{i}.png", out / f"p{i}.png"))
    return jobs


def test_results_come_in_order_and_equal_the_one_at_a_time_path(tmp_path, tiny_model):
    jobs = _jobs(tmp_path)
    (jobs[1].src).write_bytes(b"not an image")  # a failure in the middle
    jobs[2].dst.write_bytes(b"old")  # an existing output: an error without --overwrite
    outcomes = list(deblur_files(tiny_model, jobs, Settings(tile=0)))
    assert [job for job, _ in outcomes] == jobs
    kinds = [type(o) for _, o in outcomes]
    assert kinds[0] is Record and kinds[3] is Record
    assert isinstance(outcomes[1][1], LMFNError) and "p1.png" in str(outcomes[1][1])
    assert isinstance(outcomes[2][1], OutputExistsError)
    assert jobs[2].dst.read_bytes() == b"old"
    # Same pixels as deblurring the same job alone.
    alone = tmp_path / "alone.png"
    deblur_file(tiny_model, Job(jobs[0].src, alone), Settings(tile=0))
    assert np.array_equal(read_image(alone), read_image(jobs[0].dst))


def test_skip_existing_gives_skipped_records(tmp_path, tiny_model):
    jobs = _jobs(tmp_path, 2)
    jobs[0].dst.write_bytes(b"keep")
    outcomes = list(deblur_files(tiny_model, jobs, Settings(tile=0, skip_existing=True)))
    assert outcomes[0][1].status == "skipped" and outcomes[1][1].status == "ok"
    assert jobs[0].dst.read_bytes() == b"keep"


def test_reading_and_writing_run_beside_the_network(tmp_path, tiny_model, monkeypatch):
    threads = {"read": set(), "write": set()}
    load, write = batch._load, batch._write

    def spy_load(*args):
        threads["read"].add(threading.current_thread().name)
        return load(*args)

    def spy_write(*args):
        threads["write"].add(threading.current_thread().name)
        return write(*args)

    monkeypatch.setattr(batch, "_load", spy_load)
    monkeypatch.setattr(batch, "_write", spy_write)
    jobs = _jobs(tmp_path, 3)
    assert all(isinstance(o, Record) for _, o in deblur_files(tiny_model, jobs, Settings(tile=0)))
    main = threading.current_thread().name
    assert main not in threads["read"] and main not in threads["write"]
    assert all(j.dst.exists() for j in jobs)


def test_a_failed_write_is_that_jobs_error(tmp_path, tiny_model, monkeypatch):
    jobs = _jobs(tmp_path, 2)
    write = batch._write

    def failing(job, *args):
        if job is jobs[0]:
            raise OutputExistsError(job.dst, "appeared meanwhile")
        return write(job, *args)

    monkeypatch.setattr(batch, "_write", failing)
    outcomes = list(deblur_files(tiny_model, jobs, Settings(tile=0)))
    assert isinstance(outcomes[0][1], OutputExistsError) and isinstance(outcomes[1][1], Record)


# --------------------------------------------------------------------------------------------
# run_batch: a whole scored batch through the library, no CLI
# --------------------------------------------------------------------------------------------


class _Recorder(batch.BatchEvents):
    def __init__(self):
        self.calls = []

    def planned(self, jobs, problems):
        self.calls.append(("planned", len(jobs), [p.problem for p in problems]))

    def image_started(self, index, job):
        self.calls.append(("started", index, job.src.name))

    def image_done(self, record, error):
        self.calls.append(("done", record.status, type(error).__name__ if error else None))


def _scored_folders(tmp_path, n=3):
    blur, sharp = tmp_path / "blur", tmp_path / "sharp"
    blur.mkdir()
    sharp.mkdir()
    for i in range(n):
        img = natural_like(40, 56, seed=i)
        write_image(blur / f"IMG_{i}.png", img)
        write_image(sharp / f"img_{i}.png", img)  # stems match case-insensitively
    return blur, sharp


def test_run_batch_scores_reports_and_reports_progress(tmp_path, tiny_model):
    import json

    blur, sharp = _scored_folders(tmp_path)
    (blur / "IMG_1.png").write_bytes(b"broken")
    events = _Recorder()
    opts = batch.BatchOptions(settings=Settings(tile=0), gt_dir=sharp, report=tmp_path / "r.json")
    loads = []

    def load():
        loads.append(1)
        return tiny_model, {"name": "tiny"}

    run = batch.run_batch([str(blur), str(tmp_path / "missing.png")], tmp_path / "out", opts, model=load, events=events)
    assert run.summary is None and not loads  # nothing runs before the iteration
    records = list(run)
    assert [r.status for r in records] == ["failed", "ok", "failed", "ok"]  # the unplannable input first
    assert records[0].error == "no such file or folder"
    assert all(r.truth and r.ssim is not None for r in records if r.status == "ok")
    assert loads == [1]
    s = run.summary
    assert (s.ok, s.skipped, s.failed, s.all_done) == (2, 0, 2, False)
    assert s.scores["images"] == 2 and s.report == tmp_path / "r.json"
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["model"] == {"name": "tiny"} and len(rep["images"]) == 2
    assert events.calls[0] == ("planned", 3, ["no such file or folder"])
    assert events.calls[1:] == [("started", 0, "IMG_0.png"), ("done", "ok", None),
                                ("started", 1, "IMG_1.png"), ("done", "failed", "ImageError"),
                                ("started", 2, "IMG_2.png"), ("done", "ok", None)]


def test_run_batch_with_nothing_to_do_never_loads_the_model(tmp_path):
    import pytest

    from lmfn_cli.errors import ConfigError, NothingToDoError

    def load():
        raise AssertionError("the model must not be loaded")

    run = batch.run_batch([str(tmp_path / "nope.png")], tmp_path / "out", model=load)
    with pytest.raises(NothingToDoError, match="no images to deblur"):
        list(run)
    assert [r.status for r in run.records] == ["failed"]
    blur, sharp = _scored_folders(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NothingToDoError, match="no ground-truth images"):
        list(batch.run_batch([str(blur)], tmp_path / "out", batch.BatchOptions(gt_dir=empty), model=load))
    write_image(sharp / "img_0.jpg", natural_like(40, 56, seed=0))  # two ground truths with one stem
    with pytest.raises(ConfigError, match="ambiguous"):
        list(batch.run_batch([str(blur)], tmp_path / "out", batch.BatchOptions(gt_dir=sharp), model=load))


def test_run_batch_takes_a_model_and_writes_like_deblur_files(tmp_path, tiny_model):
    blur, _ = _scored_folders(tmp_path, n=2)
    run = batch.run_batch([str(blur)], tmp_path / "out", batch.BatchOptions(settings=Settings(tile=0), suffix="-s",
                                                                           fmt="png"), model=tiny_model)
    outs = [r.output for r in run]
    assert outs == [str(tmp_path / "out" / "IMG_0-s.png"), str(tmp_path / "out" / "IMG_1-s.png")]
    assert run.summary.scores is None and run.summary.all_done
    alone = deblur_file(tiny_model, Job(blur / "IMG_0.png", tmp_path / "alone.png"), Settings(tile=0))
    assert alone.status == "ok"
    assert np.array_equal(read_image(tmp_path / "alone.png"), read_image(tmp_path / "out" / "IMG_0-s.png"))


def test_a_killed_runs_temporaries_are_removed_and_others_left_alone(tmp_path, tiny_model):
    import os
    import subprocess
    import sys

    from lmfn_cli.files import remove_stale_temporaries, temporary_prefix

    blur, _ = _scored_folders(tmp_path, n=2)
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # that process has exited
    mine = temporary_prefix(out / "IMG_0.png")
    stale = out / mine.replace(f"-{os.getpid()}.", f"-{dead_pid}.")
    stale = stale.with_name(stale.name + "abc123.part")
    live = out / (mine + "zz9.part")                                          # this process: alive
    other_host = out / ".IMG_0.png.lmfn-elsewhere-1.q1.part"                  # another machine's
    unrelated = out / ".IMG_7.png.lmfn-x-1.q1.part"                           # not a planned output
    for p in (stale, live, other_host, unrelated):
        p.write_bytes(b"partial")
    assert remove_stale_temporaries([out / "IMG_0.png"]) == [stale]
    stale.write_bytes(b"partial")
    list(batch.run_batch([str(blur)], out, batch.BatchOptions(settings=Settings(tile=0)), model=tiny_model))
    assert not stale.exists() and live.exists() and other_host.exists() and unrelated.exists()
    assert (out / "IMG_0.png").exists() and (out / "IMG_1.png").exists()
    assert remove_stale_temporaries([tmp_path / "no-such-folder" / "a.png"]) == []


def test_an_output_that_appears_meanwhile_is_kept_and_skipped_with_skip_existing(tmp_path, tiny_model, monkeypatch):
    jobs = _jobs(tmp_path, n=3)
    real_compute = batch._compute

    def compute_while_another_run_writes(model, job, picture, settings, on_tile, on_estimate=None):
        out = real_compute(model, job, picture, settings, on_tile, on_estimate)
        if job is jobs[1]:
            job.dst.write_bytes(b"the other run's result")
        return out

    monkeypatch.setattr(batch, "_compute", compute_while_another_run_writes)
    outcomes = list(deblur_files(tiny_model, jobs, Settings(tile=0, skip_existing=True)))
    assert [o.status for _, o in outcomes] == ["ok", "skipped", "ok"]
    assert jobs[1].dst.read_bytes() == b"the other run's result"
    jobs[1].dst.unlink()
    outcomes = list(deblur_files(tiny_model, [jobs[1]], Settings(tile=0)))  # without it: an error
    assert isinstance(outcomes[0][1], OutputExistsError)
    assert jobs[1].dst.read_bytes() == b"the other run's result"
    jobs[1].dst.unlink()
    assert deblur_file(tiny_model, jobs[1], Settings(tile=0, skip_existing=True)).status == "skipped"


def test_two_processes_on_one_folder_both_finish(tmp_path):
    import subprocess
    import sys

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(8):
        write_image(src / f"p{i}.png", natural_like(64, 64, seed=i))
    from conftest import TINY
    from lmfn_cli import LMFN, save_weights

    weights = save_weights(LMFN(TINY), tmp_path / "tiny.safetensors", variant="tiny-test")
    cmd = [sys.executable, "-m", "lmfn_cli", "deblur", str(src), "-o", str(out), "--skip-existing", "-w", str(weights),
           "--device", "cpu", "--threads", "1", "-q"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    assert [rc for _, _, rc in results] == [0, 0], results
    written = sorted(p.name for p in out.iterdir())
    assert written == [f"p{i}.png" for i in range(8)]  # no temporaries left, nothing extra
    assert all(read_image(out / n).shape == (64, 64, 3) for n in written)


def test_a_full_disk_fails_that_image_cleanly_and_the_batch_goes_on(tmp_path, tiny_model, monkeypatch):
    import errno
    import pathlib

    jobs = _jobs(tmp_path, n=3)
    real_write_bytes = pathlib.Path.write_bytes

    def write_bytes(self, data):
        if self.name.startswith(f".{jobs[1].dst.name}.") and self.name.endswith(".part"):
            real_write_bytes(self, data[: len(data) // 2])  # half of it fits, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_bytes(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", write_bytes)
    outcomes = list(deblur_files(tiny_model, jobs, Settings(tile=0)))
    assert [type(o).__name__ for _, o in outcomes] == ["Record", "ImageError", "Record"]
    assert str(outcomes[1][1]) == f"{jobs[1].dst}: cannot write (No space left on device)"
    assert sorted(p.name for p in jobs[0].dst.parent.iterdir()) == ["p0.png", "p2.png"]  # no partial, no temporary


def test_inputs_or_out_deleted_mid_batch(tmp_path, tiny_model, monkeypatch):
    import shutil

    jobs = _jobs(tmp_path, n=4)
    real_write = batch._write

    def write_then_delete(job, result, settings, kernel=None):
        real_write(job, result, settings, kernel)
        if job is jobs[0]:  # done before p3 is read (the reader is one image ahead of the network)
            jobs[3].src.unlink()  # an input deleted before its turn
            shutil.rmtree(jobs[0].dst.parent)  # OUT deleted by hand while the batch runs

    monkeypatch.setattr(batch, "_write", write_then_delete)
    outcomes = list(deblur_files(tiny_model, jobs, Settings(tile=0)))
    kinds = [(job.src.name, type(o).__name__) for job, o in outcomes]
    assert kinds == [("p0.png", "Record"), ("p1.png", "Record"), ("p2.png", "Record"), ("p3.png", "ImageError")]
    assert "p3.png" in str(outcomes[3][1])
    # OUT is made again for the images after its deletion; the inputs left are untouched
    assert sorted(p.name for p in jobs[0].dst.parent.iterdir()) == ["p1.png", "p2.png"]
    assert all(read_image(j.src).shape == (40, 56, 3) for j in jobs[:3])


def test_a_read_only_out_is_one_error_per_image_and_nothing_written(tmp_path, tiny_model, monkeypatch):
    import errno
    import tempfile

    jobs = _jobs(tmp_path, n=2)

    def read_only(*args, **kwargs):  # as root, chmod cannot make a folder read-only: inject it
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    outcomes = list(deblur_files(tiny_model, jobs, Settings(tile=0)))
    assert [str(o) for _, o in outcomes] == [f"{j.dst}: cannot write (Read-only file system)" for j in jobs]
    assert list(jobs[0].dst.parent.iterdir()) == []
    assert all(j.src.exists() for j in jobs)
