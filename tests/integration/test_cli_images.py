"""Issue 19: `cloche images` and `cloche pull` against a real daemon and a real
registry (Debian's docker-registry on loopback, images pushed with skopeo from
an OCI layout built with umoci: imagekit.py)."""

from __future__ import annotations

import json
import os
import pty
import select
import time

import pytest

import imagekit
from conftest import DEFAULT_ROOTFS, remove_tree
from imagekit import Registry
from test_cli import CLOCHE, Cli

pytestmark = pytest.mark.skipif(bool(imagekit.missing_tools()),
                                reason=f"missing {imagekit.missing_tools()}")


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    work = tmp_path_factory.mktemp("cli-images")
    layout = imagekit.build_layout(work, DEFAULT_ROOTFS)
    r = Registry(work, "cli")
    try:
        r.push(layout, "base", "test/base:v1")
        r.push(layout, "multi", "test/multi:v1")
        yield r, layout
    finally:
        r.close()
        remove_tree(work)


def test_pull_images_and_rm(daemon, registry):
    r, layout = registry
    d = daemon("--insecure-registry", r.host)
    cli = Cli(d)
    name = f"{r.host}/test/multi:v1"

    # Not a terminal: a plain line per finished layer, then the digest.
    lines = cli.ok("pull", name).splitlines()
    want = [l["digest"] for l in imagekit.manifest_of(layout, "multi")["layers"]]
    assert sorted(line.split(": ")[0] for line in lines[:-1]) == sorted(want), lines
    assert lines[-1].startswith(f"{name}: sha256:")
    digest = lines[-1].split(": ")[1]
    assert not any("\x1b" in line for line in lines)

    table = cli.ok("images").splitlines()
    assert table[0].split() == ["NAME", "DIGEST", "SIZE", "LAYERS", "CONTAINERS"]
    row = next(line.split() for line in table[1:] if line.startswith(name))
    assert row[1] == digest[7:19] and row[4] == "5" and row[5] == "0", row
    assert cli.ok("images", "-q") == name + "\n"
    listed = json.loads(cli.ok("images", "--json"))["images"]
    assert listed[0]["digest"] == digest

    # The full reference works as well; --json streams the daemon's lines.
    out = cli.ok("pull", "--json", f"docker://{r.host}/test/base#v1").splitlines()
    assert json.loads(out[-1])["digest"].startswith("sha256:")
    assert all("layer" in json.loads(line) for line in out[:-1])

    # A container from it; rm refuses while it exists.
    cli.ok("create", "--image", name, "from-image")  # the docker-style name
    assert cli.ok("run", "from-image", "cat", "/etc/passwd").startswith("root:")
    assert cli.ok("images", "--json").count('"containers":1') == 1
    cli.fails("images", "rm", name, rc=1, match="")
    cli.ok("rm", "from-image")
    assert cli.ok("images", "rm", name) == name + "\n"
    assert name not in cli.ok("images", "-q")
    cli.fails("images", "rm", name, rc=1)

    # Errors: one line each.
    cli.fails("pull", "docker:///BAD", rc=1, match="invalid repository")
    cli.fails("pull", f"{r.host}/test/nope:v1", rc=1, match="")
    cli.fails("pull", rc=2, match="Expected")
    cli.fails("pull", "--password-stdin", name, rc=2, match="--username")


def test_pull_progress_bars_on_a_terminal(daemon, registry):
    r, _ = registry
    d = daemon("--insecure-registry", r.host)
    cli = Cli(d)
    pid, master = pty.fork()
    if pid == 0:
        try:
            os.execve(str(CLOCHE), [str(CLOCHE), "pull", f"{r.host}/test/multi:v1"], cli.env)
        finally:
            os._exit(126)
    out = bytearray()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    _, status = os.waitpid(pid, 0)
    os.close(master)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, out
    text = out.decode("utf-8", "replace")
    assert "[==============================]" in text and "done" in text, text
    assert "\x1b[K" in text  # bars redrawn in place
    assert text.rstrip().splitlines()[-1].endswith(tuple("0123456789abcdef")), text


def test_images_commands_documented(registry):
    """help, the man page and bash completion know images and pull."""
    cli = Cli(None)
    from conftest import REPO_ROOT
    import re
    import subprocess
    man1 = (REPO_ROOT / "doc/man/cloche.1").read_text()
    for name in ("images", "pull"):
        assert cli.ok(name, "--help").startswith(f"Usage: cloche {name}")
        assert re.search(rf"^\.SS {name} ", man1, re.M), name
    out = subprocess.run(["bash", "-c", f"source {REPO_ROOT}/doc/completion/cloche.bash; "
                          "COMP_WORDS=(cloche p); COMP_CWORD=1; _cloche; echo ${COMPREPLY[*]}; "
                          "COMP_WORDS=(cloche pull --); COMP_CWORD=2; _cloche; "
                          "echo ${COMPREPLY[*]}"],
                         capture_output=True, text=True).stdout.splitlines()
    assert set(out[0].split()) == {"ping", "props", "pull"}
    assert {"--username", "--password-stdin"} <= set(out[1].split())
