"""The wheel carries the report's templates: build it, install it in a fresh virtualenv, and
render a report there from the installed package alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest
from report_html import decode_image, parse

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "example_traces" / "chat_sessions.mooncake.jsonl"
TEMPLATES = ("report.html.j2", "report.css", "_run.html.j2", "_summary.html.j2",
             "_trace.html.j2")


def _run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _can_build_offline() -> bool:
    """Build in this environment when its setuptools is new enough for pyproject's license."""
    try:
        import setuptools
        import wheel  # noqa: F401
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 77


def _build_wheel(tmp: Path) -> Path:
    # Build from a copy: an in-tree build leaves build/ and egg-info in the checkout.
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "pytest_kvreuse", src / "pytest_kvreuse", ignore=ignore)
    shutil.copytree(ROOT / "templates", src / "templates", ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "MANIFEST.in"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, src / name)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp / "dist"),
           str(src)]
    if _can_build_offline():
        cmd.insert(4, "--no-build-isolation")
    _run(cmd)
    (wheel,) = (tmp / "dist").glob("pytest_kvreuse-*.whl")
    return wheel


def test_wheel_installs_and_renders_from_package_data(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in TEMPLATES:
        assert f"pytest_kvreuse/templates/{name}" in names, name
    assert "pytest_kvreuse/models.json" in names

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    python = bindir / ("python.exe" if os.name == "nt" else "python")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", "-q", str(wheel)])
    # Dependencies (numpy, matplotlib, jinja2, ...) come from this environment, appended
    # after the new venv's own site-packages so that the wheel's copy of the package wins.
    site = Path(_run([str(python), "-c", "import sysconfig; "
                      "print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    parent = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_parent_env.pth").write_text("\n".join(sorted(parent)) + "\n")

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["MPLCONFIGDIR"] = str(tmp_path / "mpl")
    script = textwrap.dedent("""
        import json, sys
        import pytest_kvreuse
        from pytest_kvreuse.output import report
        result = {"name": "plain", "params": {"block_size": 64, "format": "mooncake"},
                  "figures": {"num_requests": 3, "num_blocks": 10, "unique_blocks": 7,
                              "total_tokens": 640, "reuse_count": 3,
                              "reused_fraction": 0.3, "interval_min": 64,
                              "interval_median": 128, "interval_max": 256},
                  "offloadable_fraction": {"100": 0.2},
                  "curves": {"ccdf": {"x": [64, 128, 256], "y": [0.3, 0.2, 0.1]}},
                  "timings": {"load_s": 0.01}, "checks": [], "error": None}
        report.write_report(sys.argv[1], [result], {"plugin_version": "x"})
        print(json.dumps({"package": pytest_kvreuse.__file__,
                          "templates": str(report.builtin_templates()),
                          "deepseek": pytest_kvreuse.kv_bytes_per_token("deepseek-v3")}))
    """)
    out = json.loads(_run([str(python), "-c", script, "plain.html"], cwd=work,
                          env=env).stdout)
    assert Path(out["package"]).resolve().is_relative_to(venv.resolve())
    assert Path(out["templates"]).resolve().is_relative_to(venv.resolve())
    assert not Path(out["templates"]).resolve().is_relative_to(ROOT)
    assert out["deepseek"] == 70272  # the catalog ships in the wheel

    # The installed console script renders the bundled example too.
    _run([str(bindir / "kvreuse"), "analyze", str(EXAMPLE), "--gpu-kv-cache-size", "345792",
          "--html", "example.html", "-q"], cwd=work, env=env)
    # plain.html: one CCDF plot; example.html also a reuse-time plot (Mooncake stamps).
    for name, figure, plots in (("plain.html", "640", 1), ("example.html", "10,001,984", 2)):
        page = parse((work / name).read_text(encoding="utf-8"))
        assert len(page.images) == plots, name
        for _, src in page.images:
            decode_image(src)
        assert figure in [t for _, _, _, t in page.figures], name


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib")
def test_pyproject_ships_every_template() -> None:
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"]["pytest_kvreuse.templates"] == "templates"
    patterns = config["package-data"]["pytest_kvreuse.templates"]
    for path in (ROOT / "templates").iterdir():
        if path.name in ("__init__.py", "__pycache__"):
            continue
        assert any(path.match(p) for p in patterns), f"{path.name} would not ship"
