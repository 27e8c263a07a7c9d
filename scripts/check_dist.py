"""`make dist`'s checks: what the built wheel and sdist hold, and the wheel installed for real.

    python scripts/check_dist.py contents DIST_DIR
    python scripts/check_dist.py installed VENV

``contents`` opens the one wheel and the one sdist in DIST_DIR: the wheel holds the package (with
``py.typed`` and the simulator), the ``apache_airflow_provider`` entry point and the ``simulator``
extra, and nothing else (no tests, docs, example DAGs or benchmarks); the sdist holds what builds
the wheel and the changelog, and no tests. ``installed`` runs, in a venv
where only the wheel and Airflow were installed (not this checkout), ``airflow providers list``
and imports every module the provider info names, from the venv's site-packages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "airflow-provider-emedgene"
MODULE = "emedgene_provider"


def fail(message: str) -> None:
    raise SystemExit(f"check_dist: {message}")


def one(dist: Path, pattern: str) -> Path:
    found = sorted(dist.glob(pattern))
    if len(found) != 1:
        fail(f"expected one {pattern} in {dist}, found {[p.name for p in found]}")
    return found[0]


def check_contents(dist: Path) -> None:
    wheel = one(dist, "*.whl")
    sdist = one(dist, "*.tar.gz")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(info).decode()
        entry_points = zf.read(info.replace("METADATA", "entry_points.txt")).decode()
    top = {n.split("/", 1)[0] for n in names}
    strays = {t for t in top if t != MODULE and not t.endswith(".dist-info")}
    if strays:
        fail(f"{wheel.name} holds more than the package: {sorted(strays)}")
    for needed in (
        f"{MODULE}/py.typed",
        f"{MODULE}/__init__.py",
        f"{MODULE}/hooks/emedgene.py",
        f"{MODULE}/client/sync.py",
        f"{MODULE}/testing/simulator.py",
    ):
        if needed not in names:
            fail(f"{wheel.name} lacks {needed}")
    for banned in ("tests/", "docs/", "dags_examples/", "bench/", "conftest.py", "__pycache__/"):
        if any(banned in n for n in names):
            fail(f"{wheel.name} holds {banned}: {[n for n in names if banned in n][:3]}")
    if f"provider_info = {MODULE}:get_provider_info" not in entry_points:
        fail(f"{wheel.name} lacks the apache_airflow_provider entry point:\n{entry_points}")
    if f"emedgene = {MODULE}.plugins.emedgene:EmedgenePlugin" not in entry_points:
        fail(f"{wheel.name} lacks the airflow.plugins entry point (the webhook receiver):\n{entry_points}")
    if "Provides-Extra: simulator" not in metadata:
        fail(f"{wheel.name} lacks the simulator extra")
    with tarfile.open(sdist) as tf:
        members = tf.getnames()
    root = members[0].split("/", 1)[0]
    for needed in ("pyproject.toml", "README.md", "CHANGELOG.md", f"{MODULE}/py.typed"):
        if f"{root}/{needed}" not in members:
            fail(f"{sdist.name} lacks {needed}")
    # A part of the tests (setuptools picks tests/test*.py, not their conftest) would be broken.
    if any(m.startswith(f"{root}/tests") for m in members):
        fail(f"{sdist.name} holds tests/ (MANIFEST.in prunes it)")
    print(f"check_dist: {wheel.name} ({len(names)} files) and {sdist.name} hold what they should")


def check_installed(venv: Path) -> None:
    venv = venv.resolve()
    python, airflow = venv / "bin" / "python", venv / "bin" / "airflow"
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHONPATH"))}
        env.update(AIRFLOW_HOME=home, AIRFLOW__CORE__LOAD_EXAMPLES="False")

        def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
            # From another directory, so that this checkout's emedgene_provider cannot be imported.
            return subprocess.run(  # noqa: S603
                [str(a) for a in args], env=env, cwd=home, capture_output=True, text=True, check=False
            )

        where = run(python, "-c", f"import {MODULE}; print({MODULE}.__file__)")
        if where.returncode or str(venv.resolve()) not in str(Path(where.stdout.strip()).resolve()):
            fail(f"{MODULE} is not imported from the venv: {where.stdout}{where.stderr}")
        listed = run(airflow, "providers", "list", "--output", "json")
        if listed.returncode:
            fail(f"airflow providers list failed:\n{listed.stderr[-3000:]}")
        providers = {p["package_name"]: p for p in json.loads(listed.stdout)}
        if PACKAGE not in providers:
            fail(f"airflow providers list does not list {PACKAGE}: {sorted(providers)}")
        code = (
            f"from {MODULE} import get_provider_info\n"
            "info = get_provider_info()\n"
            "for section in ('operators', 'sensors', 'hooks', 'triggers'):\n"
            "    for module in info[section][0]['python-modules']:\n"
            "        __import__(module)\n"
            f"import {MODULE}.links.emedgene, {MODULE}.cases.batch_csv\n"
            "print(info['versions'][0])\n"
        )
        imported = run(python, "-c", code)
        if imported.returncode:
            fail(f"importing the provider's modules failed:\n{imported.stderr[-3000:]}")
        version = providers[PACKAGE]["version"]
        print(f"check_dist: the installed wheel is listed by `airflow providers list` ({PACKAGE} {version})")
        print(f"check_dist: every module of the provider info imports (from {where.stdout.strip()})")


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in {"contents", "installed"}:
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "contents":
        check_contents(Path(argv[1]))
    else:
        check_installed(Path(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
