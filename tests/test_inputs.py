"""Odd entries among the inputs (inputs.expand_inputs, batch.plan_jobs): broken and looping links,
permission denied, FIFOs, sockets, devices, names that are not UTF-8, folders that vanish, very
deep trees and links to parent folders. Each is one error line naming it (or, where it is plainly
not an image, passed over), the batch goes on, and nothing hangs or raises."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import natural_like
from lmfn_cli.batch import attach_truth, expand_inputs as expand_from_batch, plan_jobs
from lmfn_cli.cli import main
from lmfn_cli.errors import ImageError
from lmfn_cli.images import write_image
from lmfn_cli.inputs import _images_in, expand_inputs, real_path

NOT_UTF8 = b"caf\xe9.png"  # Latin-1 bytes: not valid UTF-8


def image(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, natural_like(16, 16, seed=seed))
    return path


class TookTooLong(Exception):
    pass


def within(seconds: int, fn, *args, **kwargs):
    """``fn(*args)``, failing the test (instead of hanging it) if it takes longer than ``seconds``
    (opening a FIFO for reading waits for a writer forever). In this, the main thread: an alarm
    interrupts the wait (the CLI sets signal handlers, which only the main thread may)."""

    def alarm(signum, frame):
        raise TookTooLong(f"{fn.__name__} still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        return fn(*args, **kwargs)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def in_a_thread(seconds: float, fn, *args, **kwargs):
    """``within`` for a library call, in a daemon thread: a thread that hangs is left behind."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn.__name__} still running after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


def expand(*inputs, recursive=False, exclude=None):
    """expand_inputs, bounded in time: ([found file names relative to their folder], {name: problem})."""
    found, problems = in_a_thread(60, expand_inputs, [str(i) for i in inputs], recursive=recursive, exclude=exclude)
    assert all(isinstance(p, ImageError) for p in problems)
    named = {}
    for p in problems:
        assert p.path.name not in named, f"two problems for {p.path.name}: {problems}"
        named[p.path.name] = p.problem
    return sorted(str(rel) for _, rel in found), named


def bind_socket(path: Path) -> socket.socket:
    """A UNIX socket at ``path``, bound from its folder (AF_UNIX paths are limited to ~108 bytes)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        sock.bind(path.name)
    finally:
        os.chdir(cwd)
    return sock


# --- each kind of odd entry -------------------------------------------------------------------


def test_dangling_symlinks_are_one_problem_each(tmp_path):
    folder = tmp_path / "in"
    image(folder / "good.png")
    os.symlink("nowhere.png", folder / "dangling.png")
    os.symlink(tmp_path / "gone" / "x.jpg", folder / "absolute.jpg")
    os.symlink("nowhere", folder / "latest")  # not named like an image: not an input, no word
    for recursive in (False, True):
        found, problems = expand(folder, recursive=recursive)
        assert found == ["good.png"]
        assert problems == {"dangling.png": "broken symbolic link (to nowhere.png, which does not exist)",
                            "absolute.jpg": f"broken symbolic link (to {tmp_path / 'gone' / 'x.jpg'}, which does not exist)"}
    found, problems = expand(folder / "dangling.png", folder / "latest")  # named as inputs: whatever their names
    assert found == [] and set(problems) == {"dangling.png", "latest"}
    assert all(p.startswith("broken symbolic link") for p in problems.values())
    # a symbolic link to an image is the image
    os.symlink("good.png", folder / "link.png")
    assert expand(folder)[0] == ["good.png", "link.png"]


def test_symlink_loops_are_one_problem_each_and_plan_jobs_does_not_raise(tmp_path):
    folder = tmp_path / "in"
    image(folder / "good.png")
    os.symlink("b.png", folder / "a.png")  # a -> b -> a
    os.symlink("a.png", folder / "b.png")
    os.symlink("self.png", folder / "self.png")  # self -> self
    os.symlink("loop", folder / "loop")  # not named like an image: passed over
    loop = "symbolic link loop (too many levels of symbolic links)"
    for recursive in (False, True):
        assert expand(folder, recursive=recursive) == (["good.png"], {"a.png": loop, "b.png": loop, "self.png": loop})
    assert expand(folder / "self.png", folder / "loop") == ([], {"self.png": loop, "loop": loop})
    # Path.resolve raises RuntimeError on a loop in Python 3.11; planning must not
    jobs, problems = plan_jobs([str(folder), str(folder / "a.png")], folder / "self.png")
    assert [j.src.name for j in jobs] == ["good.png"] and len(problems) == 4


def test_permission_denied_on_a_folder_or_an_entry_is_one_problem(tmp_path, monkeypatch):
    # Tests run as root, whom chmod 000 does not stop: the system calls are made to refuse.
    folder = tmp_path / "in"
    image(folder / "good.png")
    image(folder / "locked" / "inside.png")
    image(folder / "hidden-by-parent.png")
    image(tmp_path / "explicit.png")
    real_scandir, real_stat = os.scandir, os.stat

    def scandir(path="."):
        if Path(path) == folder / "locked":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    def stat_(path, *args, **kwargs):
        if Path(os.fsdecode(path)).name in ("hidden-by-parent.png", "explicit.png"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "stat", stat_)
    assert expand(folder) == (["good.png"], {"hidden-by-parent.png": "permission denied"})  # no -r: locked/ not read
    assert expand(folder, recursive=True) == (["good.png"], {"hidden-by-parent.png": "permission denied",
                                                             "locked": "permission denied: cannot list this folder"})
    assert expand(folder / "locked") == ([], {"locked": "permission denied: cannot list this folder"})
    assert expand(tmp_path / "explicit.png") == ([], {"explicit.png": "permission denied"})


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and lists whatever the mode bits say")
def test_permission_denied_for_real_when_not_root(tmp_path):
    folder = tmp_path / "in"
    image(folder / "good.png")
    image(folder / "locked" / "inside.png")
    (folder / "locked").chmod(0)
    try:
        found, problems = expand(folder, recursive=True)
        assert found == ["good.png"] and problems == {"locked": "permission denied: cannot list this folder"}
        assert expand(folder / "locked" / "inside.png") == ([], {"inside.png": "permission denied"})
    finally:
        (folder / "locked").chmod(0o755)


def test_fifos_are_never_opened(tmp_path):
    folder = tmp_path / "in"
    image(folder / "good.png")
    os.mkfifo(folder / "pipe.png")  # named like an image: an error, not a wait for a writer
    os.mkfifo(folder / "pipe.txt")  # not named like an image: not an input
    for recursive in (False, True):
        assert expand(folder, recursive=recursive) == (["good.png"], {"pipe.png": "is a FIFO (named pipe), not an image file"})
    assert expand(folder / "pipe.txt") == ([], {"pipe.txt": "is a FIFO (named pipe), not an image file"})
    os.symlink("pipe.png", folder / "to-pipe.jpg")
    assert expand(folder / "to-pipe.jpg")[1] == {"to-pipe.jpg": "is a FIFO (named pipe) (through a symbolic link), not an image file"}
    assert expand(f"{folder}/*.png")[1] == {"pipe.png": "is a FIFO (named pipe), not an image file"}


def test_sockets_are_one_problem_each(tmp_path):
    folder = tmp_path / "in"
    image(folder / "good.png")
    with contextlib.closing(bind_socket(folder / "s.png")), contextlib.closing(bind_socket(folder / "agent.sock")):
        assert stat.S_ISSOCK(os.stat(folder / "s.png").st_mode)
        assert expand(folder, recursive=True) == (["good.png"], {"s.png": "is a socket, not an image file"})
        assert expand(folder / "agent.sock") == ([], {"agent.sock": "is a socket, not an image file"})


def test_device_files_through_a_link_are_one_problem_each(tmp_path):
    folder = tmp_path / "in"
    image(folder / "good.png")
    os.symlink("/dev/null", folder / "null.png")
    os.symlink("/dev/null", folder / "null")
    problem = "is a character device (through a symbolic link), not an image file"
    assert expand(folder) == (["good.png"], {"null.png": problem})
    assert expand(folder / "null") == ([], {"null": problem})
    assert expand("/dev/zero") == ([], {"zero": "is a character device, not an image file"})  # never read


def test_device_files_made_with_mknod_are_one_problem_each(tmp_path):
    folder = tmp_path / "in"
    image(folder / "good.png")
    try:
        os.mknod(folder / "dev.png", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot make a device file here ({exc}); the /dev/null link test covers devices")
    assert expand(folder) == (["good.png"], {"dev.png": "is a character device, not an image file"})
    assert expand(folder / "dev.png") == ([], {"dev.png": "is a character device, not an image file"})


def test_names_that_are_not_utf8_are_taken_and_shown_readably(tmp_path):
    folder = tmp_path / "in"
    image(folder / "good.png")
    data = (folder / "good.png").read_bytes()
    fd = os.open(os.fsencode(folder) + b"/" + NOT_UTF8, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, data)
    os.close(fd)
    os.symlink(b"nowhere", os.fsencode(folder) + b"/bad\xff.png")
    found, problems = in_a_thread(60, expand_inputs, [str(folder)])
    assert [src.name for src, _ in found] == [os.fsdecode(NOT_UTF8), "good.png"]
    assert found[0][0].read_bytes() == data  # the name keeps its bytes: the file opens
    assert len(problems) == 1
    assert str(problems[0]) == f"{folder}/bad\\xff.png: broken symbolic link (to nowhere, which does not exist)"
    str(problems[0]).encode("utf-8")  # printable on any stream


def test_a_folder_or_file_that_vanishes_while_listed_is_one_problem(tmp_path, monkeypatch):
    folder = tmp_path / "in"
    image(folder / "good.png")
    image(folder / "gone" / "x.png")
    image(folder / "vanished.png")
    real_scandir = os.scandir

    def scandir(path="."):  # list the folder, then another process deletes two of its entries
        if isinstance(path, int) or Path(path) != folder:  # (shutil.rmtree lists by descriptor)
            return real_scandir(path)
        with real_scandir(path) as listing:
            entries = list(listing)
        if (folder / "gone").exists():
            shutil.rmtree(folder / "gone")
            (folder / "vanished.png").unlink()
        return contextlib.nullcontext(entries)

    monkeypatch.setattr(os, "scandir", scandir)
    found, problems = expand(folder, recursive=True)
    assert found == ["good.png"]
    assert problems == {"gone": "folder disappeared while it was read", "vanished.png": "disappeared while its folder was read"}


def test_a_very_deep_tree_is_walked_without_recursion(tmp_path):
    folder = tmp_path / "in"
    chain = [folder]
    for _ in range(1100):  # deeper than Python's recursion limit (1000); Path.mkdir(parents=True) recurses
        chain.append(chain[-1] / "d")
        chain[-1].mkdir(parents=True)
    try:
        image(chain[-1] / "bottom.png")
        image(folder / "top.png")
        found, problems = expand(folder, recursive=True)
        assert found == [str(Path(*["d"] * 1100, "bottom.png")), "top.png"] and problems == {}
        found, problems = expand(f"{folder}/**/*.png")  # a pattern's ** too
        assert found == ["bottom.png", "top.png"] and problems == {}
    finally:  # removed here: shutil.rmtree, which pytest cleans its old folders with, recurses too
        (chain[-1] / "bottom.png").unlink(missing_ok=True)
        for d in reversed(chain[1:]):
            d.rmdir()


def test_a_path_longer_than_the_system_allows_is_one_problem(tmp_path):
    folder = tmp_path / "in"
    image(folder / "top.png")
    name = "n" * 200
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(30):  # 30 x 201 bytes: past PATH_MAX (4096); made with dir_fd, one level at a time
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        out = os.open("bottom.png", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, (folder / "top.png").read_bytes())
        os.close(out)
    finally:
        os.close(fd)
    found, problems = in_a_thread(60, expand_inputs, [str(folder)], recursive=True)
    assert [rel for _, rel in found] == [Path("top.png")]
    assert len(problems) == 1 and problems[0].path.name == name
    assert problems[0].problem == "path too long for the system (ENAMETOOLONG): cannot list this folder"


def test_links_to_parent_folders_are_not_followed_by_r_nor_by_a_pattern(tmp_path, caplog):
    folder = tmp_path / "in"
    image(folder / "a.png")
    image(folder / "sub" / "b.png")
    image(tmp_path / "elsewhere" / "c.png")
    os.symlink("..", folder / "sub" / "up")  # a cycle
    os.symlink(".", folder / "sub" / "here")  # another: together, glob.glob would list 2**40 paths
    os.symlink(folder, folder / "sub" / "root.png")  # a folder link named like an image
    os.symlink(tmp_path / "elsewhere", folder / "elsewhere")
    with caplog.at_level(logging.WARNING, "lmfn_cli.inputs"):
        found, problems = expand(folder, recursive=True)
    assert found == ["a.png", "sub/b.png"] and problems == {}
    warned = sorted(r.getMessage().split(":")[0] for r in caplog.records)
    assert warned == [str(folder / "elsewhere"), str(folder / "sub" / "here"), str(folder / "sub" / "root.png"),
                      str(folder / "sub" / "up")]
    assert all("not followed" in r.getMessage() for r in caplog.records)
    # the pattern's ** does not enter the links either; its *.png matches the folder link root.png,
    # which is then taken as a folder named as an input would be (a.png again, planned once)
    assert expand(f"{folder}/**/*.png") == (["a.png", "a.png", "b.png"], {})
    assert expand(folder / "elsewhere") == (["c.png"], {})  # a link given as an input is followed
    assert expand(folder, recursive=False)[0] == ["a.png"]


def test_existing_behaviour_stays(tmp_path):
    # sorted, hidden names left out, OUT inside an input folder left out, batch still exports expand_inputs
    folder = tmp_path / "in"
    for name in ("b.png", "a.jpg", ".hidden.png", "sub/c.png", ".git/d.png", "out/e.png", "notes.txt"):
        image(folder / name) if name.endswith("png") or name.endswith("jpg") else (folder / name).write_text("x")
    images, problems = _images_in(folder, True, real_path(folder / "out"))
    assert [p.relative_to(folder).as_posix() for p in images] == ["a.jpg", "b.png", "sub/c.png"] and problems == []
    assert expand_from_batch is expand_inputs
    assert expand(folder / "sub" / "missing.png") == ([], {"missing.png": "no such file or folder"})
    assert expand(f"{folder}/*.gif") == ([], {"*.gif": "no files match this pattern"})
    (folder / "empty").mkdir()
    assert expand(folder / "empty") == ([], {"empty": "folder holds no images (use -r for sub-folders)"})


def test_ground_truth_folder_with_odd_entries_warns_and_scores_the_rest(tmp_path, caplog):
    blur, sharp = tmp_path / "blur", tmp_path / "sharp"
    image(blur / "p0.png")
    image(blur / "p1.png")
    image(sharp / "p0.png")
    os.symlink("nowhere.png", sharp / "p1.png")  # broken ground truth: p1 is not scored
    os.mkfifo(sharp / "p2.png")
    jobs, problems = plan_jobs([str(blur)], tmp_path / "out")
    assert problems == []
    with caplog.at_level(logging.WARNING, "lmfn_cli.batch"):
        jobs = in_a_thread(60, attach_truth, jobs, sharp)
    assert {j.src.name: j.truth and j.truth.name for j in jobs} == {"p0.png": "p0.png", "p1.png": None}
    text = caplog.text
    assert "ground truth left out: " + str(sharp / "p1.png") + ": broken symbolic link" in text
    assert "ground truth left out: " + str(sharp / "p2.png") + ": is a FIFO" in text


# --- the whole command ------------------------------------------------------------------------


def deblur(*args, weights):
    result = CliRunner().invoke(main, ["deblur", *map(str, args), "-w", str(weights), "--device", "cpu"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("lmfn: error:")]


@pytest.fixture
def odd_folder(tmp_path):
    """in/ with three good images (one in a sub-folder, one not named in UTF-8) and one entry of
    every odd kind named like an image; {odd name: its problem}."""
    folder = tmp_path / "in"
    image(folder / "good.png")
    image(folder / "sub" / "deep.png", seed=1)
    data = (folder / "good.png").read_bytes()
    fd = os.open(os.fsencode(folder) + b"/" + NOT_UTF8, os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, data)
    os.close(fd)
    image(folder / "locked.png", seed=2)  # made unreadable by the test (root reads anything)
    os.symlink("nowhere.png", folder / "dangling.png")
    os.symlink("b.png", folder / "a.png")
    os.symlink("a.png", folder / "b.png")
    os.symlink("self.png", folder / "self.png")
    os.mkfifo(folder / "pipe.png")
    os.symlink("/dev/null", folder / "null.png")
    os.symlink("..", folder / "sub" / "up")
    sock = bind_socket(folder / "s.png")
    (folder / "notes.txt").write_text("not an image")
    os.mkfifo(folder / "pipe.txt")
    yield folder, {"dangling.png": "broken symbolic link", "a.png": "symbolic link loop", "b.png": "symbolic link loop",
                   "self.png": "symbolic link loop", "pipe.png": "is a FIFO (named pipe), not an image file",
                   "null.png": "is a character device (through a symbolic link), not an image file",
                   "s.png": "is a socket, not an image file", "locked.png": "permission denied"}
    sock.close()


def locked_for_everyone(monkeypatch):
    real = Path.read_bytes

    def read_bytes(self):
        if self.name == "locked.png":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)


def test_a_folder_of_good_images_and_odd_entries_end_to_end(odd_folder, tmp_path, tiny_weights, monkeypatch):
    folder, odd = odd_folder
    locked_for_everyone(monkeypatch)
    out = tmp_path / "out"
    result = within(300, deblur, "-r", folder, "-o", out, weights=tiny_weights)
    assert result.exit_code == 1, result.output  # some inputs failed
    errors = error_lines(result)
    assert len(errors) == len(odd), result.stderr
    for name, problem in odd.items():
        assert sum(f"{folder / name}: {problem}" in e for e in errors) == 1, (name, errors)
    outputs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert outputs == [os.fsdecode(NOT_UTF8), "good.png", "sub/deep.png"]
    assert sorted(result.stdout.splitlines()) == sorted([str(out / "caf\\xe9.png"), str(out / "good.png"),
                                                         str(out / "sub" / "deep.png")])
    assert f"lmfn: warning: {folder / 'sub' / 'up'}: symbolic link to a folder, not followed" in result.stderr
    assert result.stderr.splitlines()[-1].startswith(f"lmfn: 3 deblurred, {len(odd)} failed")


def test_json_output_keeps_names_exactly(odd_folder, tmp_path, tiny_weights, monkeypatch):
    folder, odd = odd_folder
    locked_for_everyone(monkeypatch)
    out = tmp_path / "out"
    result = within(300, deblur, folder, "-o", out, "--json", weights=tiny_weights)
    assert result.exit_code == 1
    rows = [json.loads(line) for line in result.stdout.splitlines()]  # ASCII JSON, the name's bytes as \udcXX
    ok = {os.fsencode(r["input"]) for r in rows if r["status"] == "ok"}
    assert ok == {os.fsencode(folder) + b"/" + NOT_UTF8, os.fsencode(folder / "good.png")}
    failed = {Path(r["input"]).name: r["error"] for r in rows if r["status"] == "failed"}
    assert set(failed) == set(odd) and all(failed[n].startswith(p) for n, p in odd.items())
    assert all(r["output"] is None for r in rows if Path(r["input"]).name in odd and Path(r["input"]).name != "locked.png")


def test_odd_entries_named_as_inputs_are_one_error_line_each(tmp_path, tiny_weights):
    folder = tmp_path / "in"
    good = image(folder / "good.png")
    os.mkfifo(folder / "pipe")
    os.symlink("nowhere.png", folder / "dangling.png")
    os.symlink("/dev/null", folder / "null.png")
    os.symlink("self", folder / "self")
    with contextlib.closing(bind_socket(folder / "s.sock")):
        result = within(300, deblur, good, folder / "pipe", folder / "dangling.png", folder / "null.png", folder / "self",
                        folder / "s.sock", "-o", tmp_path / "out", weights=tiny_weights)
    assert result.exit_code == 1
    errors = error_lines(result)
    assert len(errors) == 5, result.stderr
    for name in ("pipe", "dangling.png", "null.png", "self", "s.sock"):
        assert sum(f"{folder / name}: " in e for e in errors) == 1, (name, errors)
    assert (tmp_path / "out" / "good.png").is_file()


def test_a_deep_tree_end_to_end(tmp_path, tiny_weights):
    folder = tmp_path / "in"
    rel = Path(*["d"] * 210, "bottom.png")
    image(folder / rel)
    result = within(300, deblur, "-r", folder, "-o", tmp_path / "out", weights=tiny_weights)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / rel).is_file()


def test_names_that_are_not_utf8_print_on_a_strict_stdout(tmp_path, tiny_weights):
    # A real process, stdout encoded strictly as UTF-8 (as in a UTF-8 locale): the names' bytes
    # come out as \xNN, not as an UnicodeEncodeError.
    folder = tmp_path / "in"
    image(folder / "good.png")
    os.rename(folder / "good.png", os.fsencode(folder) + b"/" + NOT_UTF8)
    os.symlink(b"nowhere", os.fsencode(folder) + b"/bad\xff.png")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C.UTF-8"}
    proc = subprocess.run([sys.executable, "-m", "lmfn_cli", "deblur", str(folder), "-o", str(tmp_path / "out"),
                           "-w", str(tiny_weights), "--device", "cpu"], capture_output=True, timeout=300, env=env)
    stdout, stderr = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")
    assert proc.returncode == 1 and "Traceback" not in stderr, stderr
    assert stdout.splitlines() == [str(tmp_path / "out" / "caf\\xe9.png")]
    assert f"lmfn: error: {folder}/bad\\xff.png: broken symbolic link (to nowhere, which does not exist)" in stderr
    assert os.path.isfile(os.fsencode(tmp_path / "out") + b"/" + NOT_UTF8)
