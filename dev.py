#!/usr/bin/env python3
"""Set up a development environment and run the demo or the test suite.

Needs nothing but ``python3`` (3.9+) and network access to PyPI::

    python3 dev.py demo    # example instrument + a short client session
    python3 dev.py test    # ruff, mypy, the Sphinx docs (-W) and the whole pytest suite

The environment lives in ``.venv`` (the package installed in editable mode with its test, doc
and shell extras) and ``.venv-peers/katcp093`` (katcp-python 0.9.3, a foreign peer that tests
run in a subprocess).  Both are created on first use and refreshed when ``setup.cfg`` changes.
"""

import hashlib
import os
import subprocess
import sys
import venv

ROOT = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(ROOT, ".venv")
PEERS = os.path.join(ROOT, ".venv-peers", "katcp093")
BIN = "Scripts" if os.name == "nt" else "bin"
EXE = ".exe" if os.name == "nt" else ""


def _python(env_dir):
    return os.path.join(env_dir, BIN, "python" + EXE)


def _run(*cmd, **kwargs):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, **kwargs).returncode


def _ensure_venv(env_dir, requirements, stamp_source):
    """Create ``env_dir`` and install ``requirements`` unless its stamp is current."""
    stamp_file = os.path.join(env_dir, ".dev-stamp")
    stamp = hashlib.sha256(stamp_source.encode()).hexdigest()
    if os.path.exists(stamp_file):
        with open(stamp_file) as f:
            if f.read() == stamp:
                return True
    if not os.path.exists(_python(env_dir)):
        print(f"creating virtualenv {os.path.relpath(env_dir, ROOT)}", flush=True)
        venv.EnvBuilder(with_pip=True).create(env_dir)
    py = _python(env_dir)
    if _run(py, "-m", "pip", "install", "-q", "--upgrade", "pip") != 0:
        return False
    if _run(py, "-m", "pip", "install", "-q", *requirements) != 0:
        return False
    with open(stamp_file, "w") as f:
        f.write(stamp)
    return True


def setup_main():
    """Install the package with its extras into ``.venv``."""
    with open(os.path.join(ROOT, "setup.cfg")) as f:
        cfg = f.read()
    if not _ensure_venv(VENV, ["-e", ".[test,doc,shell]"], cfg):
        sys.exit("dev.py: could not install the package into .venv (see pip's output above)")
    return _python(VENV)


def setup_peers():
    """Install katcp-python 0.9.3 into its own virtualenv (tests skip its cases if this fails)."""
    if not _ensure_venv(PEERS, ["katcp==0.9.3"], "katcp==0.9.3"):
        print("dev.py: katcp-python 0.9.3 could not be installed; its interop tests will skip")


def cmd_test(args):
    py = setup_main()
    setup_peers()
    steps = [
        [py, "-m", "ruff", "check", "."],
        # Configured in pyproject.toml ([tool.mypy]: which files, which Python).
        [py, "-m", "mypy"],
        [py, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "doc", "doc/_build/html"],
        [py, "-m", "pytest", "-q", *args],
    ]
    for step in steps:
        rc = _run(*step)
        if rc != 0:
            sys.exit(rc)


def cmd_demo(args):
    py = setup_main()
    os.execv(py, [py, "-m", "katcp.tools.demo", *args])


def main():
    commands = {"test": cmd_test, "demo": cmd_demo}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
