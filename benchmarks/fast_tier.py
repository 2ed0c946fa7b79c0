"""The fast tier's two promises, measured: `python3 -m pytest -q -m "not slow"` runs in <= 120 s on the project's
2-core machine, and it reaches every module of the package.

Two runs, one after the other (never both at once: the timed run must have the machine to itself):
1. the README's command as it is, timed (wall clock, interpreter start to exit);
2. the same command under coverage.py (subprocesses too: the CLI tests run `rtdetr-export` in a child), which
   says, per module, whether any of its functions ran. A module "is reached" when a line inside one of its
   function bodies ran; a module without functions (constants, re-exports) is reached when it is imported.
   Import alone does not count for a module with functions: every module's `def` lines run on import.

Writes benchmarks/results/fast_tier/<machine>/<date>/report.md and report.json; exits 1 when the time is over the
limit or a module is not reached (the report names them), so CI or a contributor can run it as a check.

    python3 benchmarks/fast_tier.py            # both runs (~2 min + ~3 min)
    python3 benchmarks/fast_tier.py --no-coverage
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rtdetr_export"
COMMAND = [sys.executable, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider"]  # README's, no cache
LIMIT_S = 120.0


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_slug() -> str:
    cpu = cpu_model()
    kind = "epyc" if "EPYC" in cpu else "xeon" if "Xeon" in cpu else re.sub(r"\W+", "-", cpu.lower())[:20]
    return f"{os.cpu_count()}core-{kind}"


def engines_build_cached() -> bool:
    """Whether the C++ engines are already built: the engines tests build them on first use (a compile of about
    half a minute on 2 cores), so an uncached run is that much slower than the inner loop it measures."""
    build = Path(os.environ.get("RTDETR_ENGINES_BUILD", ROOT / "engines" / "build"))
    return (build / "rtdetr_detect").is_file()


def bytecode_cached() -> bool:
    """Whether the package's and the tests' compiled modules are cached (__pycache__, written by an earlier run:
    tests/conftest.py caches them although the machine sets PYTHONDONTWRITEBYTECODE=1); without them the run
    compiles the package and rewrites every test module's asserts first (about 5 s on 2 cores)."""
    return any((ROOT / "rtdetr_export" / "__pycache__").glob("*.pyc")) and any((ROOT / "tests" / "__pycache__").glob(
        "*.pyc"))


def addopts() -> str:
    """pyproject's pytest ``addopts``: how many workers the command starts is decided there."""
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"].get("addopts", "")


def timed_run() -> dict:
    """The README's fast-tier command, timed; its summary line (`N passed, M skipped in T s`)."""
    start = time.perf_counter()
    done = subprocess.run(COMMAND, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    summary = next((line for line in reversed(done.stdout.splitlines()) if " in " in line and "passed" in line), "")
    return {"wall_s": round(wall, 1), "exit_code": done.returncode, "summary": summary.strip("= ")}


def function_bodies(path: Path) -> list[range]:
    """The line ranges of every function body in ``path`` (not its `def` line, which runs on import)."""
    tree = ast.parse(path.read_text())
    bodies = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0]
            # A docstring is an expression statement coverage does not count as executed code.
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and len(node.body) > 1:
                first = node.body[1]
            bodies.append(range(first.lineno, (node.end_lineno or first.lineno) + 1))
    return bodies


def coverage_run(work: Path) -> tuple[dict, dict[str, set[int]]]:
    """The fast tier under coverage.py, child processes included; executed lines per package file."""
    rc = work / ".coveragerc"
    rc.write_text(f"[run]\nsource = {PACKAGE}\nparallel = true\ndata_file = {work / '.coverage'}\n"
                  "patch = subprocess\n")
    env = {**os.environ, "COVERAGE_RCFILE": str(rc)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "coverage", "run", "--rcfile", str(rc), *COMMAND[1:]],
                          cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    subprocess.run([sys.executable, "-m", "coverage", "combine", "--rcfile", str(rc), "-q"], cwd=ROOT, env=env,
                   check=True)
    out = work / "coverage.json"
    subprocess.run([sys.executable, "-m", "coverage", "json", "--rcfile", str(rc), "-q", "-o", str(out)], cwd=ROOT,
                   env=env, check=True)
    files = json.loads(out.read_text())["files"]
    executed = {str(Path(name).resolve().relative_to(ROOT)): set(data["executed_lines"])
                for name, data in files.items()}
    return {"wall_s": round(wall, 1), "exit_code": done.returncode}, executed


def reach(executed: dict[str, set[int]]) -> dict[str, str]:
    """Per package module: "ran" (a function body ran), "imported" (no functions; imported), or "not reached"."""
    verdicts = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = str(path.relative_to(ROOT))
        lines = executed.get(name, set())
        bodies = function_bodies(path)
        if not bodies:
            verdicts[name] = "imported" if lines or not path.read_text().strip() else "not reached"
        else:
            verdicts[name] = "ran" if any(line in body for body in bodies for line in lines) else "not reached"
    return verdicts


def write_report(report: dict, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    timed = report["timed"]
    lines = [f"# Fast tier, {report['date']} ({report['machine']})", "",
             f"Command: `{' '.join(['python3', *COMMAND[1:]])}` from the repository root, with pyproject's "
             f"`addopts = \"{report.get('addopts', '')}\"` (`-n auto`: two workers for a run over folders, "
             "tests/conftest.py `pytest_xdist_auto_num_workers`).",
             f"Load average before the run: {report['load_before']} (other work on the machine makes the time an "
             "upper bound).",
             "C++ engines build: " + ("cached in engines/build before the run." if report["engines_build_cached"]
                                      else "compiled during the run (a first run; later runs reuse it)."),
             "Compiled Python modules: " + ("cached (__pycache__) before the run." if report["bytecode_cached"]
                                            else "compiled during the run (a first run; later runs reuse them)."), "",
             f"- wall time: **{timed['wall_s']} s** (limit {LIMIT_S:.0f} s), exit code {timed['exit_code']}",
             f"- pytest: {timed['summary']}"]
    if "reach" in report:
        missing = [name for name, verdict in report["reach"].items() if verdict == "not reached"]
        counts = {verdict: sum(v == verdict for v in report["reach"].values()) for verdict in
                  ("ran", "imported", "not reached")}
        lines += [f"- modules of the package: {len(report['reach'])}; a function ran in {counts['ran']}, "
                  f"{counts['imported']} have no functions and were imported, {counts['not reached']} not reached"
                  + (": " + ", ".join(missing) if missing else ""),
                  f"- the coverage run (not timed for the limit) took {report['coverage']['wall_s']} s"]
    (folder / "report.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-coverage", action="store_true", help="time the tier only")
    parser.add_argument("--out", type=Path, help="report folder (default benchmarks/results/fast_tier/...)")
    args = parser.parse_args()
    today = dt.date.today().isoformat()
    report = {"date": today, "machine": f"{cpu_model()}, {os.cpu_count()} cores",
              "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()), "limit_s": LIMIT_S,
              "engines_build_cached": engines_build_cached(), "bytecode_cached": bytecode_cached(),
              "addopts": addopts(),
              "timed": timed_run()}
    print(f"fast tier: {report['timed']['wall_s']} s ({report['timed']['summary']})", flush=True)
    if not args.no_coverage:
        with tempfile.TemporaryDirectory() as work:
            report["coverage"], executed = coverage_run(Path(work))
        report["reach"] = reach(executed)
    folder = args.out or ROOT / "benchmarks" / "results" / "fast_tier" / machine_slug() / today
    write_report(report, folder)
    print((folder / "report.md").read_text())
    missing = [name for name, verdict in report.get("reach", {}).items() if verdict == "not reached"]
    return int(report["timed"]["exit_code"] != 0 or report["timed"]["wall_s"] > LIMIT_S or bool(missing))


if __name__ == "__main__":
    sys.exit(main())
