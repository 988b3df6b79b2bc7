#!/usr/bin/env python3
"""One entry point for the project: set up the environment, run the demo, the tests, build.

    python build.py demo     set up (runtime deps only) and segment the bundled example
    python build.py demo --3d   set up (runtime + pycolmap, scikit-image), segment and
                             reconstruct the bundled turntable, and judge the result
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
REQS = {
    "runtime": ROOT / "requirements.txt",
    "recon": ROOT / "requirements-recon.txt",
    "dev": ROOT / "requirements-dev.txt",
}
# the requirement files each environment is installed from, and the environments that
# include it (the dev one holds everything: its file lists pycolmap and scikit-image too)
FILES = {"runtime": ("runtime",), "recon": ("runtime", "recon"), "dev": ("runtime", "recon", "dev")}
COVERED_BY = {"runtime": ("runtime", "recon", "dev"), "recon": ("recon", "dev"), "dev": ("dev",)}


def vpython() -> Path:
    return VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(cmd: list, **kw) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.call([str(c) for c in cmd], cwd=kw.pop("cwd", ROOT), **kw)


def _stamp(kind: str) -> str:
    h = hashlib.sha256(sys.version.encode())
    for k in FILES[kind]:
        h.update(REQS[k].read_bytes())
    h.update((ROOT / "pyproject.toml").read_bytes())
    return h.hexdigest()


def _ready(kind: str) -> bool:
    stamp_file = VENV / f".setup-{kind}"
    return stamp_file.exists() and stamp_file.read_text() == _stamp(kind)


def setup(kind: str = "dev") -> None:
    """Create .venv and install ``kind`` ("runtime", "recon" or "dev") dependencies, if
    needed (an environment that includes them already will do)."""
    if vpython().exists() and any(_ready(k) for k in COVERED_BY[kind]):
        return
    stamp_file = VENV / f".setup-{kind}"
    want = _stamp(kind)
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
    """The 2D demo (runtime deps), or with ``--3d`` the 3D one (+ pycolmap, scikit-image)."""
    three_d = "--3d" in args.rest
    setup("recon" if three_d else "runtime")
    rest = [a for a in args.rest if a != "--3d"]
    return run([vpython(), "-m", "tools.demo_3d" if three_d else "tools.demo", *rest])


def cmd_test(args) -> int:
    setup("dev")
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return run([vpython(), "-m", "pytest", "-q", *args.rest], env=env)


def cmd_addon(args) -> int:
    """Build the Blender extension zip(s) into dist/ (stdlib only; see the section at the end)."""
    try:
        return build_addon(args)
    except AddonBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def cmd_bench(args) -> int:
    setup("dev")
    return run([vpython(), "-m", "tools.bench", *args.rest])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup", help="create .venv and install dependencies")
    s.add_argument("--dev", action="store_true", help="also training, Blender and test deps")
    for name, helptext in (
        ("demo", "segment the bundled example (--3d: reconstruct the bundled turntable)"),
        ("test", "run the test suite (extra args go to pytest)"),
        ("bench", "print speed and memory figures"),
    ):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("rest", nargs=argparse.REMAINDER)
    add_addon_arguments(sub.add_parser("addon", help="build the Blender extension zip"))
    argv = sys.argv[1:]
    if argv and argv[0] in ("demo", "test", "bench"):
        # everything after the command goes through untouched (e.g. `test -k upsample -x`)
        args = argparse.Namespace(cmd=argv[0], rest=argv[1:])
    else:
        args = p.parse_args(argv)
    return {
        "setup": cmd_setup,
        "demo": cmd_demo,
        "test": cmd_test,
        "addon": cmd_addon,
        "bench": cmd_bench,
    }[args.cmd](args)


# --- Blender extension zip ---
# `python build.py addon` zips blender_addon/ as a Blender 4.2+ extension, one zip per platform
# (--all-platforms: one zip for all): the add-on's files at the zip root (an allow-list),
# segcore vendored as the sub-package vendor/segcore/ (its .py files and the bundled models),
# and OpenCV + SciPy wheels for the platform and each Blender Python in wheels/ (numpy ships
# with Blender). The zipped manifest lists exactly the wheels inside. An extension installs
# nothing itself: installer.py (Install Dependencies) goes only into the legacy zip.
# Downloads are cached in build/wheels/, so rebuilds need no network. Stdlib only.

ADDON_DIR = ROOT / "blender_addon"
ADDON_MANIFEST = "blender_manifest.toml"
ADDON_README = "README.md"
# the legacy add-on's pip installer: never in an extension zip (extensions bundle wheels)
ADDON_INSTALLER = "installer.py"
# makes vendor/ a package, so segcore imports as <add-on package>.vendor.segcore
VENDOR_INIT = (
    '"""Packages bundled with the add-on, imported as its sub-packages (never top-level)."""\n'
)
# Keep in step with REQUIREMENTS in blender_addon/preferences.py.
ADDON_WHEELS = (("opencv-python-headless", ">=4.11,<4.12"), ("scipy", ">=1.11,<1.16"))
# Blender 4.2-5.0 run Python 3.11, Blender 5.1 runs Python 3.13.
ADDON_PYTHONS = ("3.11", "3.13")
# Blender platform name -> pip platform tags, most compatible (oldest OS) first; pip also
# accepts any older OS version of each tag.
ADDON_PLATFORMS = {
    "linux-x64": ("manylinux_2_17_x86_64", "manylinux2014_x86_64"),
    "windows-x64": ("win_amd64",),
    "macos-arm64": ("macosx_11_0_arm64", "macosx_12_0_arm64", "macosx_13_0_arm64"),
    "macos-x64": (
        "macosx_10_13_x86_64",
        "macosx_11_0_x86_64",
        "macosx_12_0_x86_64",
        "macosx_13_0_x86_64",
    ),
}
ADDON_MANIFEST_KEYS = (
    "schema_version",
    "id",
    "version",
    "name",
    "tagline",
    "maintainer",
    "type",
    "blender_version_min",
    "license",
    "permissions",
)


class AddonBuildError(Exception):
    """A one-line reason the add-on zip could not be built."""


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_addon_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--platforms",
        type=_csv,
        default=list(ADDON_PLATFORMS),
        metavar="LIST",
        help=f"comma-separated Blender platforms (default: {','.join(ADDON_PLATFORMS)})",
    )
    p.add_argument(
        "--python",
        type=_csv,
        default=list(ADDON_PYTHONS),
        metavar="LIST",
        help=f"Blender Python versions to bundle wheels for (default: {','.join(ADDON_PYTHONS)})",
    )
    p.add_argument(
        "--no-wheels",
        action="store_true",
        help="bundle no wheels (no downloads): one zip, for a Blender that has OpenCV and SciPy",
    )
    p.add_argument(
        "--all-platforms",
        action="store_true",
        help="one zip holding the wheels of every platform (large) instead of one zip each",
    )
    p.add_argument(
        "--legacy",
        action="store_true",
        help="also a legacy add-on zip (one top folder, no wheels, with Install Dependencies) "
        "for Install legacy Add-on",
    )
    p.add_argument("--refresh-wheels", action="store_true", help="download wheels again")
    p.add_argument("--out", type=Path, default=ROOT / "dist", metavar="DIR", help="output folder")


def addon_files(legacy: bool = False) -> list[tuple[Path, str]]:
    """(source, path in the zip) for everything but wheels, the manifest and vendor/__init__.py:
    the allow-list. ``installer.py`` only for the legacy zip."""
    files = [
        (p, p.name) for p in sorted(ADDON_DIR.glob("*.py")) if legacy or p.name != ADDON_INSTALLER
    ]
    files.append((ADDON_DIR / ADDON_README, ADDON_README))
    for lic in (ADDON_DIR / "LICENSE", ROOT / "LICENSE", ROOT / "COPYING"):
        if lic.is_file():
            files.append((lic, "LICENSE"))
            break
    seg = ROOT / "segcore"
    for p in sorted(seg.rglob("*.py")):
        if "__pycache__" not in p.parts:
            files.append((p, f"vendor/segcore/{p.relative_to(seg).as_posix()}"))
    for pattern in ("*.onnx", "*.json"):
        for p in sorted((seg / "models").glob(pattern)):
            if not p.name.endswith("_ort.onnx"):  # ONNX Runtime's graph: Blender has none
                files.append((p, f"vendor/segcore/models/{p.name}"))
    missing = [str(src) for src, _ in files if not src.is_file()]
    if missing:
        raise AddonBuildError(f"missing add-on file(s): {', '.join(missing)}")
    return files


def _pip_python() -> Path:
    return vpython() if vpython().exists() else Path(sys.executable)


def addon_wheels(platform: str, python: str, refresh: bool = False) -> list[Path]:
    """The wheels for one platform and Python version, from build/wheels/ or PyPI."""
    found = []
    for dist, spec in ADDON_WHEELS:
        folder = ROOT / "build" / "wheels" / platform / f"py{python}" / dist
        cached = sorted(folder.glob("*.whl")) if folder.is_dir() else []
        if refresh or len(cached) != 1:
            for old in cached:
                old.unlink()
            folder.mkdir(parents=True, exist_ok=True)
            cmd = [
                _pip_python(), "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                "--only-binary=:all:", "--no-deps", "--implementation", "cp",
                "--python-version", python,
                *(a for tag in ADDON_PLATFORMS[platform] for a in ("--platform", tag)),
                "-d", folder, f"{dist}{spec}",
            ]  # fmt: skip
            if run(cmd) != 0:
                raise AddonBuildError(
                    f"pip could not download {dist}{spec} for {platform} / Python {python} "
                    "(see above); check the network, or pass --no-wheels"
                )
            cached = sorted(folder.glob("*.whl"))
            if len(cached) != 1:
                raise AddonBuildError(f"{folder}: expected one wheel, found {len(cached)}")
        found.append(cached[0])
    return found


def addon_manifest_text(platforms: list[str], wheels: list[str]) -> str:
    """The manifest with ``platforms`` and ``wheels`` set, checked by parsing it back."""
    import re
    import tomllib

    text = (ADDON_DIR / ADDON_MANIFEST).read_text(encoding="utf-8")
    text = re.sub(r"(?ms)^(platforms|wheels)\s*=\s*\[.*?\][ \t]*\n", "", text)
    generated = "platforms = [" + ", ".join(f'"{p}"' for p in platforms) + "]\n"
    if wheels:
        generated += "wheels = [\n" + "".join(f'  "{w}",\n' for w in wheels) + "]\n"
    table = re.search(r"(?m)^\[", text)
    at = table.start() if table else len(text)
    text = text[:at].rstrip("\n") + "\n\n" + generated + "\n" + text[at:]
    data = tomllib.loads(text)
    missing = [k for k in ADDON_MANIFEST_KEYS if k not in data]
    if missing:
        raise AddonBuildError(f"{ADDON_MANIFEST}: missing required key(s) {', '.join(missing)}")
    if "network" in data["permissions"]:
        raise AddonBuildError(
            f"{ADDON_MANIFEST}: an extension bundles its wheels and needs no network permission"
        )
    if data.get("wheels", []) != wheels or data["platforms"] != platforms:
        raise AddonBuildError(f"{ADDON_MANIFEST}: could not set platforms / wheels")
    return text


def _write_zip(path: Path, entries: list[tuple[Path, str]], manifest: str | None, top: str = ""):
    import zipfile

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    texts = {"vendor/__init__.py": VENDOR_INIT}
    if manifest is not None:
        texts[ADDON_MANIFEST] = manifest
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        for arc, text in texts.items():
            z.writestr(top + arc, text)
        for src, arc in entries:
            kind = zipfile.ZIP_STORED if arc.endswith(".whl") else zipfile.ZIP_DEFLATED
            z.write(src, top + arc, compress_type=kind)
    os.replace(tmp, path)
    count = len(entries) + len(texts)
    print(f"built {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} "
          f"({path.stat().st_size / 1e6:.1f} MB, {count} files)", flush=True)  # fmt: skip


def build_addon(args) -> int:
    import tomllib

    bad = [p for p in args.platforms if p not in ADDON_PLATFORMS]
    if bad or not args.platforms:
        raise AddonBuildError(
            f"unknown platform(s) {', '.join(bad) or '(none)'}; "
            f"choose from {', '.join(ADDON_PLATFORMS)}"
        )
    bad = [v for v in args.python if v not in ADDON_PYTHONS]
    if bad or not args.python:
        raise AddonBuildError(
            f"unsupported Python {', '.join(bad) or '(none)'}; "
            f"choose from {', '.join(ADDON_PYTHONS)}"
        )
    with open(ADDON_DIR / ADDON_MANIFEST, "rb") as f:
        manifest = tomllib.load(f)
    stem = f"{manifest['id']}-{manifest['version']}"
    files = addon_files()
    wheels: dict[str, list[Path]] = {}
    for platform in args.platforms:
        found: dict[str, Path] = {}
        for python in [] if args.no_wheels else args.python:
            for w in addon_wheels(platform, python, args.refresh_wheels):
                found.setdefault(w.name, w)  # an abi3 wheel serves several Pythons
        wheels[platform] = [found[k] for k in sorted(found)]

    def build(path: Path, platforms: list[str]) -> None:
        chosen = sorted({w.name: w for p in platforms for w in wheels[p]}.items())
        entries = files + [(w, f"wheels/{name}") for name, w in chosen]
        text = addon_manifest_text(platforms, [f"./wheels/{name}" for name, _ in chosen])
        _write_zip(path, entries, text)

    if args.all_platforms or args.no_wheels:
        build(args.out / f"{stem}.zip", list(args.platforms))
    else:  # what Blender's `extension build --split-platforms` makes: one zip per platform
        for platform in args.platforms:
            build(args.out / f"{stem}-{platform.replace('-', '_')}.zip", [platform])
    if args.legacy:
        # Install legacy Add-on wants one top-level package folder; no manifest, so Blender
        # reads bl_info, and no wheels (use the preferences' Install Dependencies button).
        legacy = addon_files(legacy=True)
        _write_zip(args.out / f"{stem}-legacy.zip", legacy, None, top=f"{manifest['id']}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
