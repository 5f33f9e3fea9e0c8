"""Shared fixtures: paths into the repository and the CLI binary built by `cargo build --release`."""
import os
import shutil
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def asset(*parts):
    return os.path.join(ROOT, "assets", *parts)


def reference(name):
    """A shared reference file (../shared/reference), or the bundled copy in assets/reference."""
    shared = os.path.join(ROOT, "..", "shared", "reference", name)
    return shared if os.path.exists(shared) else asset("reference", name)


@pytest.fixture(scope="session")
def cli():
    """Runs the `tessera` binary (TESSERA_BIN, or target/release/tessera, or on PATH)."""
    exe = os.environ.get("TESSERA_BIN") or os.path.join(ROOT, "target", "release", "tessera")
    if not os.path.exists(exe):
        exe = shutil.which("tessera")
    if not exe:
        pytest.skip("the tessera binary is not built (cargo build --release): CLI comparisons skipped")

    def run(*args):
        out = subprocess.run([exe, *args], capture_output=True, cwd=ROOT)
        assert out.returncode == 0, out.stderr.decode()
        return out

    return run
