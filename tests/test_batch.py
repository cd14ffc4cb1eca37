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
