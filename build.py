#!/usr/bin/env python3
"""One entry point for the project: set up the environment, run the demo, the tests, build.

    python build.py demo     set up (runtime deps only) and segment the bundled example
    python build.py test     set up (all deps) and run the whole test suite
    python build.py setup    create .venv and install the pinned dependencies
    python build.py addon    build the Blender extension zip into dist/
    python build.py bench    speed and memory figures (writes docs/benchmarks.md)

Runs with any Python 3.11+; everything else happens inside .venv. Setup is idempotent: it
does nothing when the requirement files have not changed since the last install.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
REQS = {"runtime": ROOT / "requirements.txt", "dev": ROOT / "requirements-dev.txt"}


def vpython() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(cmd: list, **kw) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.call([str(c) for c in cmd], cwd=kw.pop("cwd", ROOT), **kw)


def _stamp(kind: str) -> str:
    h = hashlib.sha256(sys.version.encode())
    for k in ("runtime", "dev") if kind == "dev" else ("runtime",):
        h.update(REQS[k].read_bytes())
    h.update((ROOT / "pyproject.toml").read_bytes())
    return h.hexdigest()


def setup(kind: str = "dev") -> None:
    """Create .venv and install ``kind`` ("runtime" or "dev") dependencies, if needed."""
    stamp_file = VENV / f".setup-{kind}"
    want = _stamp(kind)
    if stamp_file.exists() and stamp_file.read_text() == want and vpython().exists():
        return
    if (
        kind == "runtime"
        and (VENV / ".setup-dev").exists()
        and (VENV / ".setup-dev").read_text() == _stamp("dev")
    ):
        return  # the dev environment includes the runtime one
    if not vpython().exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    code = run([vpython(), "-m", "pip", "install", "-q", "-r", REQS[kind]], env=env)
    if code == 0:
        code = run(
            [
                vpython(),
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "-e",
                ".",
            ],
            env=env,
        )
    if code:
        sys.exit(
            f"error: installing the {kind} dependencies failed (exit {code}); "
            "see the pip output above"
        )
    stamp_file.write_text(want)


def cmd_setup(args) -> int:
    setup("dev" if args.dev else "runtime")
    print(f"environment ready: {vpython()}")
    return 0


def cmd_demo(args) -> int:
    setup("runtime")
    return run([vpython(), "-m", "segcore.demo", *args.rest])


def cmd_test(args) -> int:
    setup("dev")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return run([vpython(), "-m", "pytest", "-q", *args.rest], env=env)


def cmd_addon(args) -> int:
    setup("dev")
    return run([vpython(), "-m", "blender_addon.build", *args.rest])


def cmd_bench(args) -> int:
    setup("dev")
    return run([vpython(), "-m", "segcore.bench", *args.rest])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup", help="create .venv and install dependencies")
    s.add_argument("--dev", action="store_true", help="also training, Blender and test deps")
    for name, helptext in (
        ("demo", "segment the bundled example"),
        ("test", "run the test suite (extra args go to pytest)"),
        ("addon", "build the Blender extension zip"),
        ("bench", "print speed and memory figures"),
    ):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("rest", nargs=argparse.REMAINDER)
    args = p.parse_args()
    return {
        "setup": cmd_setup,
        "demo": cmd_demo,
        "test": cmd_test,
        "addon": cmd_addon,
        "bench": cmd_bench,
    }[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
