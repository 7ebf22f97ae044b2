"""What the plugin costs a pytest run that has no kvreuse item: time and peak memory of
``pytest`` on one plain test, with the plugin loaded (as for everyone who installs the
package) against ``-p no:kvreuse`` (the baseline), measured in the same run.

Each run is a fresh interpreter; the two kinds alternate and the best of ``--runs`` is
kept (the least disturbed by other work on the machine). Goal: under 20 ms and 2 MB.

    python bench/bench_plugin_import.py [--runs 15]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runs pytest in this interpreter and prints its peak resident memory (KiB, Linux).
CHILD = """\
import resource, sys
import pytest
code = pytest.main(sys.argv[1:])
print("RSS", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(int(code))
"""


# The entry point alone, after pytest itself is imported: time and resident memory it adds.
IMPORT = """\
import resource, time, importlib.metadata as md
import pytest, _pytest.config  # what is loaded before pytest loads the entry points
[ep] = [e for e in md.entry_points(group="pytest11") if e.name == "kvreuse"]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
ep.load()
import pytest_kvreuse.plugin.drift  # loaded through pytest_plugins
took = time.perf_counter() - start
print("IMPORT", took, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


def import_cost() -> tuple[float, int]:
    out = subprocess.run([sys.executable, "-c", IMPORT], capture_output=True, text=True,
                         check=True).stdout
    _, took, rss = next(line for line in out.splitlines() if line.startswith("IMPORT")).split()
    return float(took), int(rss)


def run(project: Path, extra: list[str]) -> tuple[float, int]:
    cmd = [sys.executable, "-c", CHILD, str(project), "-q", "-p", "no:cacheprovider",
           "-p", "no:randomly", *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=project)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"pytest failed:\n{proc.stdout}\n{proc.stderr}")
    rss = int(next(line.split()[1] for line in proc.stdout.splitlines()
                   if line.startswith("RSS")))
    return elapsed, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        (project / "test_plain.py").write_text("def test_plain():\n    assert 1 + 1 == 2\n")
        results: dict[str, list[tuple[float, int]]] = {"with": [], "without": []}
        run(project, [])  # warm the file cache and bytecode
        for _ in range(args.runs):
            results["without"].append(run(project, ["-p", "no:kvreuse"]))
            results["with"].append(run(project, []))
    imports = [import_cost() for _ in range(args.runs)]
    best = {k: (min(t for t, _ in v), min(r for _, r in v)) for k, v in results.items()}
    (t0, r0), (t1, r1) = best["without"], best["with"]
    print(f"pytest on one plain test, best of {args.runs} fresh runs each:")
    print(f"  -p no:kvreuse (baseline): {t0 * 1000:7.1f} ms, peak {r0 / 1024:6.1f} MiB")
    print(f"  plugin loaded:            {t1 * 1000:7.1f} ms, peak {r1 / 1024:6.1f} MiB")
    print(f"  plugin cost:              {(t1 - t0) * 1000:+7.1f} ms, {(r1 - r0) / 1024:+6.2f} MiB"
          f"  (goal: under 20 ms and 2 MiB)")
    took = sorted(t for t, _ in imports)
    rss = sorted(r for _, r in imports)
    print(f"loading the entry point after pytest: median {took[len(took) // 2] * 1000:.1f} ms "
          f"(best {took[0] * 1000:.1f} ms), median {rss[len(rss) // 2] / 1024:+.2f} MiB")


if __name__ == "__main__":
    main()
