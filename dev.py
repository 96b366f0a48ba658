#!/usr/bin/env python3
"""Set up a development environment and run the demo or the test suite.

Needs nothing but ``python3`` (3.9+) and network access to PyPI::

    python3 dev.py demo     # example instrument + a short client session
    python3 dev.py test     # ruff, mypy, the Sphinx docs (-W), the pytest suite, the codec tests on
                            # the pure-Python codec, then the packaging check below
    python3 dev.py test --codec=python   # the whole suite on the pure-Python KATCP codec
    python3 dev.py package  # only the packaging check: build the sdist and the wheel, install
                            # the wheel in a clean virtualenv, smoke-test it outside the tree

Arguments after ``test`` (other than ``--codec``) go to pytest, e.g.
``python3 dev.py test tests/test_codec.py -x``.  ``--codec=python`` sets ``KATCP_CODEC=python``,
which :mod:`katcp.codec` reads at import (as on platforms where katcp-codec has no wheel).

The environment lives in ``.venv`` (the package installed in editable mode with its test, doc
and shell extras, plus ``build``, ``setuptools`` and ``wheel``) and ``.venv-peers/katcp093`` (katcp-python 0.9.3, a foreign
peer that tests run in a subprocess).  Both are created on first use and refreshed when
``setup.cfg`` or the list of requirements changes.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import venv
import zipfile

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


#: What ``.venv`` holds: the package (editable) with its extras, and what building the sdist
#: and the wheel without an isolated build environment needs (faster: nothing to download).
MAIN_REQUIREMENTS = ["-e", ".[test,doc,shell]", "build", "setuptools>=61", "wheel"]


def setup_main():
    """Install the package with its extras into ``.venv``."""
    with open(os.path.join(ROOT, "setup.cfg")) as f:
        cfg = f.read()
    if not _ensure_venv(VENV, MAIN_REQUIREMENTS, cfg + repr(MAIN_REQUIREMENTS)):
        sys.exit("dev.py: could not install the package into .venv (see pip's output above)")
    return _python(VENV)


def setup_peers():
    """Install katcp-python 0.9.3 into its own virtualenv (tests skip its cases if this fails)."""
    if not _ensure_venv(PEERS, ["katcp==0.9.3"], "katcp==0.9.3"):
        print("dev.py: katcp-python 0.9.3 could not be installed; its interop tests will skip")


#: The tests that exercise the KATCP codec directly: run again on the pure-Python codec by
#: ``dev.py test`` (the whole suite runs on it with ``--codec=python``, or ``tox -e py3-purecodec``).
CODEC_TESTS = ["tests/test_codec.py", "tests/test_vectors.py"]


def cmd_test(args):
    codec = None
    for arg in list(args):
        if arg.startswith("--codec="):
            codec = arg.split("=", 1)[1]
            args.remove(arg)
    if codec not in (None, "python", "rust"):
        sys.exit(f"dev.py: --codec must be 'python' or 'rust', not {codec!r}")
    py = setup_main()
    setup_peers()
    steps = [
        ("lint", [py, "-m", "ruff", "check", "."], None),
        # Configured in pyproject.toml ([tool.mypy]: which files, which Python).
        ("types", [py, "-m", "mypy"], None),
        ("docs", [py, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "doc",
                  "doc/_build/html"], None),
    ]
    if codec:
        steps.append((f"the whole suite on the {codec} codec", [py, "-m", "pytest", "-q", *args],
                      {"KATCP_CODEC": codec}))
    else:
        steps.append(("tests", [py, "-m", "pytest", "-q", *args], None))
        if not args:
            steps.append(("codec tests on the pure-Python codec",
                          [py, "-m", "pytest", "-q", *CODEC_TESTS], {"KATCP_CODEC": "python"}))
    for title, step, env in steps:
        print(f"\n== dev.py test: {title}", flush=True)
        rc = _run(*step, env=dict(os.environ, **env) if env else None)
        if rc != 0:
            sys.exit(rc)
    if not args and not codec:
        cmd_package([], py)


# ------------------------------------------------------------------------------ packaging

#: Run in the clean virtualenv, from a directory outside the source tree.
SMOKE_TEST = r"""
import importlib, os, sys
root = sys.argv[1]
import katcp
where = os.path.dirname(katcp.__file__)
assert not where.startswith(root), f"imported katcp from the source tree: {where}"
for name in ["katcp.core", "katcp.server", "katcp.client", "katcp.resource_client",
             "katcp.testutils", "katcp.fake_clients", "katcp.ncp", "katcp.ncp.blocking",
             "katcp.tools.cmd", "katcp.tools.shell", "katcp.tools.example_server"]:
    importlib.import_module(name)
assert os.path.isfile(os.path.join(where, "py.typed")), "katcp/py.typed missing from the wheel"
from katcp import BlockingClient, DeviceServer, Message
from katcp.codec import CODEC_BACKEND
class Smoke(DeviceServer):
    VERSION_INFO = ("smoke", 1, 0)
    BUILD_INFO = ("smoke", 1, 0, "")
    def setup_sensors(self):
        pass
server = Smoke("127.0.0.1", 0)
server.start(timeout=5)
client = BlockingClient(*server.bind_address)
client.start()
assert client.wait_protocol(timeout=5)
reply, informs = client.blocking_request(Message.request("watchdog"), timeout=5)
assert reply.reply_ok(), reply
client.stop(); client.join(timeout=5)
server.stop().result(timeout=5); server.join(timeout=5)
print(f"smoke test passed: katcp {katcp.__version__} from {where}, codec {CODEC_BACKEND}")
"""

#: Files the sdist must carry besides the package.
SDIST_FILES = ["README.rst", "CHANGELOG.rst", "setup.cfg", "pyproject.toml", "katcp/py.typed",
               "scripts/cryostat.py", "doc/index.rst", "tests/test_scripts.py"]


def cmd_package(args, py=None):
    """Build the sdist and the wheel; install the wheel in a clean venv; smoke-test it."""
    t0 = time.monotonic()
    py = py or setup_main()
    work = tempfile.mkdtemp(prefix="katcp-package-")
    dist = os.path.join(work, "dist")
    try:
        print(f"\n== dev.py package: build the sdist and the wheel into {dist}", flush=True)
        if _run(py, "-m", "build", "--sdist", "--no-isolation", "--outdir", dist, ".",
                stdout=subprocess.DEVNULL) != 0:
            sys.exit("dev.py: building the sdist failed (run the command above to see why)")
        if _run(py, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                "--wheel-dir", dist, ".") != 0:
            sys.exit("dev.py: building the wheel failed")
        sdist = next(os.path.join(dist, n) for n in os.listdir(dist) if n.endswith(".tar.gz"))
        wheel = next(os.path.join(dist, n) for n in os.listdir(dist) if n.endswith(".whl"))
        _check_sdist(sdist)
        _check_wheel(wheel)

        env_dir = os.path.join(work, "venv")
        print(f"\n== dev.py package: install the wheel into a clean virtualenv {env_dir}",
              flush=True)
        venv.EnvBuilder(with_pip=True).create(env_dir)
        vpy = _python(env_dir)
        if _run(vpy, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel) != 0:
            sys.exit("dev.py: installing the wheel (with its dependencies) failed")

        print(f"\n== dev.py package: smoke test from {work} (outside the source tree)",
              flush=True)
        clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",
                                                                      "KATCP_CODEC")}
        if subprocess.run([vpy, "-c", SMOKE_TEST, ROOT], cwd=work, env=clean_env).returncode:
            sys.exit("dev.py: the smoke test of the installed wheel failed")
        for script in ("katcp-cmd", "katcp-shell", "katcp-exampleserver", "katcp-admin"):
            exe = os.path.join(env_dir, BIN, script + EXE)
            print("+", script, "--help", flush=True)
            if subprocess.run([exe, "--help"], cwd=work, env=clean_env,
                              stdout=subprocess.DEVNULL).returncode:
                sys.exit(f"dev.py: {script} --help failed in the clean virtualenv")
        print(f"packaging check passed in {time.monotonic() - t0:.0f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_sdist(path):
    import tarfile
    with tarfile.open(path) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    missing = [n for n in SDIST_FILES if n not in names]
    if missing:
        sys.exit(f"dev.py: the sdist lacks {missing}")
    print(f"sdist {os.path.basename(path)}: {len(names)} files, including {', '.join(SDIST_FILES)}")


def _check_wheel(path):
    with zipfile.ZipFile(path) as whl:
        names = set(whl.namelist())
        entry_points = next((whl.read(n).decode() for n in names
                             if n.endswith(".dist-info/entry_points.txt")), "")
    missing = [n for n in ("katcp/py.typed", "katcp/ncp/blocking.py", "katcp/tools/cmd.py")
               if n not in names]
    missing += [s for s in ("katcp-cmd", "katcp-shell", "katcp-exampleserver", "katcp-admin")
                if s not in entry_points]
    if missing:
        sys.exit(f"dev.py: the wheel lacks {missing}")
    print(f"wheel {os.path.basename(path)}: {len(names)} files, py.typed and 4 console scripts")


def cmd_demo(args):
    py = setup_main()
    os.execv(py, [py, "-m", "katcp.tools.demo", *args])


def main():
    commands = {"test": cmd_test, "demo": cmd_demo, "package": cmd_package}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    main()
