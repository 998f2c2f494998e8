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
    for name in ("images", "pull", "build"):
        assert cli.ok(name, "--help").startswith(f"Usage: cloche {name}")
        assert re.search(rf"^\.SS {name} ", man1, re.M), name
    for sub in ("import", "export", "commit"):
        assert re.search(rf"^\.SS images {sub} ", man1, re.M), sub
        assert f"images {sub}" in cli.ok("images", "--help")
    for opt in ("--tag", "--file", "--build-arg", "--no-cache"):
        assert opt in cli.ok("build", "--help")
        assert opt.replace("-", r"\-") in man1, opt
    out = subprocess.run(["bash", "-c", f"source {REPO_ROOT}/doc/completion/cloche.bash; "
                          "COMP_WORDS=(cloche p); COMP_CWORD=1; _cloche; echo ${COMPREPLY[*]}; "
                          "COMP_WORDS=(cloche pull --); COMP_CWORD=2; _cloche; "
                          "echo ${COMPREPLY[*]}; "
                          "COMP_WORDS=(cloche build --); COMP_CWORD=2; _cloche; "
                          "echo ${COMPREPLY[*]}; "
                          "COMP_WORDS=(cloche images ''); COMP_CWORD=2; _cloche; "
                          "echo ${COMPREPLY[*]}"],
                         capture_output=True, text=True).stdout.splitlines()
    assert set(out[0].split()) == {"ping", "props", "pull"}
    assert {"--username", "--password-stdin"} <= set(out[1].split())
    assert {"--tag", "--file", "--build-arg", "--no-cache"} <= set(out[2].split())
    assert set(out[3].split()) == {"rm", "import", "export", "commit"}


# --------------------------------------------------------------------------
# build, images import/export/commit


def _pty_run(cli, argv, timeout=120) -> str:
    pid, master = pty.fork()
    if pid == 0:
        try:
            os.execve(str(CLOCHE), [str(CLOCHE), *argv], cli.env)
        finally:
            os._exit(126)
    out = bytearray()
    deadline = time.monotonic() + timeout
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
    return out.decode("utf-8", "replace")


def test_build_runs_cmd_and_reuses_cached_steps(daemon, registry, tmp_path):
    r, _ = registry
    d = daemon("--insecure-registry", r.host)
    cli = Cli(d)
    ctx = tmp_path / "ctx"
    (ctx / "site").mkdir(parents=True)
    (ctx / "hello.txt").write_text("hello v1\n")
    (ctx / "site" / "index.html").write_text("<p>index</p>\n")
    (ctx / "Dockerfile").write_text(f"""\
# a comment, then the steps
FROM {r.host}/test/base:v1
ARG GREETING=hi
USER 0:0
ENV APP_DIR=/app \\
    MODE=built
WORKDIR $APP_DIR
COPY hello.txt ./
COPY site /srv/www/
RUN echo "$GREETING from RUN" && cat hello.txt > copied.txt && echo run-output-line
ENTRYPOINT []
CMD ["/bin/sh", "-c", "cat /app/copied.txt /srv/www/index.html; echo cwd=$(pwd) mode=$MODE"]
LABEL org.example.role="web app"
EXPOSE 8080
""")
    out = cli.ok("build", "-t", "app:v1", ctx, timeout=180)
    lines = out.splitlines()
    assert lines[0] == f"Step 1/12 : FROM {r.host}/test/base:v1", out
    assert "run-output-line" in lines and "hi from RUN" in lines, out
    assert "Using cache" not in out
    assert lines[-1].startswith("app:v1: sha256:"), out
    digest = lines[-1].split(": ")[1]
    assert "cloche/app:v1" in cli.ok("images", "-q").split()
    # No build container is left behind.
    assert cli.ok("ls", "-q") == ""

    # A container from the result runs its CMD (cloche run without a command).
    cli.ok("create", "--image", "app:v1", "built")
    assert cli.ok("run", "built") == "hello v1\n<p>index</p>\ncwd=/app mode=built\n"
    assert cli.ok("run", "built", "cat", "/app/hello.txt") == "hello v1\n"
    props = json.loads(cli.ok("props", "built", "--json"))
    assert props["cloche.image.exposed-ports"] == "8080/tcp"
    assert props["cloche.image.working-dir"] == "/app"

    # Unchanged: every step after FROM and ARG comes from the cache, nothing runs.
    out = cli.ok("build", "-t", "app:v1", ctx, timeout=180)
    assert out.count(" ---> Using cache") == 10, out
    assert "run-output-line" not in out.splitlines()
    assert out.splitlines()[-1] == f"app:v1: {digest}"

    # A copied file changed: the steps before it stay cached, it and the rest run.
    (ctx / "hello.txt").write_text("hello v2\n")
    out = cli.ok("build", "-t", "app:v2", "--build-arg", "GREETING=hey", ctx, timeout=180)
    steps = out.split("Step ")[1:]
    cached = [s.split(" :")[0] for s in steps if "Using cache" in s]
    assert cached == ["3/12", "4/12", "5/12"], out  # USER, ENV and WORKDIR
    assert "hey from RUN" in out.splitlines() and "run-output-line" in out.splitlines()
    v2 = out.splitlines()[-1].split(": ")[1]
    assert v2 != digest
    cli.ok("create", "--image", "app:v2", "built2")
    assert cli.ok("run", "built2").startswith("hello v2\n")
    assert cli.ok("run", "built").startswith("hello v1\n")  # the first image is unchanged

    # On a terminal: bars for the base image's layers and for what COPY sends;
    # --no-cache runs every step again (RUN's files have new times: a new image,
    # which the cache then holds).
    text = _pty_run(cli, ["build", "--no-cache", "-t", "app:v2", "--build-arg", "GREETING=hey",
                          str(ctx)], timeout=180)
    assert "Using cache" not in text and "run-output-line" in text
    assert "[==============================]" in text and "\x1b[K" in text, text
    assert "step 6" in text and "step 7" in text, text  # the two COPY steps' upload bars
    last = text.rstrip().splitlines()[-1]
    assert last.startswith("app:v2: sha256:") and "\x1b" not in last, text
    v2 = last.split(": ")[1]

    # --json: a line per step that does something, then the result.
    out = cli.ok("build", "--json", "-t", "app:v2", "--build-arg", "GREETING=hey", ctx,
                 timeout=180)
    records = [json.loads(line) for line in out.splitlines()]
    assert all(rec["cached"] for rec in records[:-1]) and len(records) == 11, records
    assert records[-1] == {"name": "app:v2", "digest": v2}

    # Errors: one line, naming the instruction and its line; nothing left running.
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "Dockerfile").write_text(f"FROM {r.host}/test/base:v1\nRUN true\nHEALTHCHECK CMD true\n")
    cli.fails("build", "-t", "bad:v1", bad, rc=1,
              match="Dockerfile:3: 'HEALTHCHECK' is not supported by cloche build")
    (bad / "Dockerfile").write_text(f"FROM {r.host}/test/base:v1\nRUN exit 3\n")
    cli.fails("build", "-t", "bad:v1", bad, rc=1, match="Dockerfile:2: RUN: 'exit 3' exited with "
              "status 3")
    (bad / "Dockerfile").write_text(f"FROM {r.host}/test/base:v1\nCOPY ../ctx/hello.txt /x\n")
    cli.fails("build", "-t", "bad:v1", bad, rc=1, match="leads out of the build context")
    (bad / "Dockerfile").write_text(f"FROM {r.host}/test/base:v1\nCOPY --chown=1 a /x\n")
    cli.fails("build", "-t", "bad:v1", bad, rc=1, match="'COPY --chown' is not supported")
    (bad / "Dockerfile").write_text(f"FROM {r.host}/test/base:v1 AS one\n")
    cli.fails("build", "-t", "bad:v1", bad, rc=1, match="multi-stage")
    cli.fails("build", bad, rc=2, match="Missing -t")
    assert sorted(cli.ok("ls", "-q").split()) == ["built", "built2"]
    assert "cloche/bad:v1" not in cli.ok("images", "-q").split()


def test_images_export_import_and_commit(daemon, registry, tmp_path):
    r, _ = registry
    d = daemon("--insecure-registry", r.host)
    cli = Cli(d)
    name = f"{r.host}/test/base:v1"
    cli.ok("pull", name)
    cli.ok("create", "--image", name, "src")
    cli.ok("run", "src", "sh", "-c", "echo committed > /made")
    out = cli.ok("images", "commit", "-c", "ENV GREETING=hello", "-c", "ENTRYPOINT []", "-c",
                 'CMD ["/bin/sh", "-c", "echo $GREETING; cat /made"]', "src", "snap:v1")
    assert out.startswith("snap:v1: sha256:"), out
    cli.ok("create", "--image", "snap:v1", "from-snap")
    assert cli.ok("run", "from-snap") == "hello\ncommitted\n"

    # Export to a file, import it under another name: the same files and config.
    archive = tmp_path / "snap.tar"
    cli.ok("images", "export", "snap:v1", "-o", archive)
    assert archive.stat().st_size > 0 and not (tmp_path / "snap.tar.part").exists()
    out = cli.ok("images", "import", archive, "copy:v1").splitlines()
    # Not a terminal: a plain line once the upload is whole, then the result.
    assert out[0].startswith("copy:v1: ") and out[0].endswith("MiB"), out
    assert out[1].startswith("copy:v1: sha256:") and len(out) == 2, out
    assert json.loads(cli.ok("images", "import", "--json", archive, "copy:v2"))["name"] == "copy:v2"
    cli.ok("create", "--image", "copy:v1", "from-copy")
    assert cli.ok("run", "from-copy") == "hello\ncommitted\n"
    # From stdin, and with a progress bar on a terminal.
    assert cli.ok("images", "import", "-", "copy:v3",
                  input=archive.read_bytes()).splitlines()[-1].startswith("copy:v3: sha256:")
    text = _pty_run(cli, ["images", "import", str(archive), "copy:v4"])
    assert "[==============================]" in text and "\x1b[K" in text, text
    assert text.rstrip().splitlines()[-1].startswith("copy:v4: sha256:"), text

    # Errors: one line each.
    cli.fails("images", "export", "nope:v1", "-o", tmp_path / "x.tar", rc=1)
    assert not (tmp_path / "x.tar").exists()
    (tmp_path / "junk.tar").write_bytes(b"not an archive" * 100)
    cli.fails("images", "import", tmp_path / "junk.tar", "junk:v1", rc=1)
    cli.fails("images", "import", tmp_path / "missing.tar", "junk:v1", rc=1, match="missing.tar")
    cli.fails("images", "commit", "-c", "RUN true", "src", "x:v1", rc=1,
              match="'RUN' does not change an image's config")
    cli.fails("images", "commit", "nope", "x:v1", rc=1, match="nope")
    cli.fails("images", "commit", "src", rc=2, match="Expected")
