"""`make mutate`: mutation testing of the modules that decide outcomes, with mutmut; prints the
score per module and the surviving mutants, and fails under the threshold.

Which modules are mutated and which unit tests run against them is mutmut's configuration in
pyproject.toml (`[tool.mutmut]`: `only_mutate`, `pytest_add_cli_args_test_selection`); for each
mutant mutmut runs only the tests that reached the mutated function. Mutants that no test can
kill because they change nothing observable are listed, with the reason, in
tests/mutation_equivalents.toml and left out of the score.

    python -m tests.mutate                      # every module
    python -m tests.mutate core/chat/answer.py  # some modules
    python -m tests.mutate --changed HEAD~1     # the modules a change touched
    python -m tests.mutate --changed HEAD~1 --gated-only   # CI: of those, the ones at 90% already
    python -m tests.mutate --survivors core/chat/answer.py   # re-test only what survived last time
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
THRESHOLD = 90.0
# Modules that reached the threshold: CI (`--changed REF --gated-only`) mutates those a change
# touched and fails if one drops below it. A module joins when its tests bring it to 90%.
GATED = (
    "core/upstream/errors.py",
    "core/upstream/legacy/events.py",
    "core/upstream/inference/events.py",
    "core/upstream/agent/events.py",
    "core/chat/answer.py",
    "core/pool/router.py",
    "core/pool/accounts.py",
    "core/licensing/licenses.py",
    "core/chat/resolve.py",
    "core/upstream/prompt.py",
    "facade/anthropic_messages/convert.py",
    "facade/openai_responses/convert.py",
    "facade/openai_chat/convert.py",
    "facade/sse.py",
)
EQUIVALENTS = ROOT / "tests" / "mutation_equivalents.toml"

# mutmut's exit codes (mutmut/stats.py): what counts as caught, what as a gap in the tests.
CAUGHT = {
    1: "killed",
    3: "killed",
    36: "timeout",
    -24: "timeout",
    24: "timeout",
    152: "timeout",
    255: "timeout",
}
MISSED = {0: "survived", 5: "no tests", 33: "no tests", 35: "suspicious"}


@dataclass
class Score:
    module: str
    caught: int = 0
    equivalent: int = 0
    missed: list[tuple[str, str, str]] = field(default_factory=list)  # (name, status, diff)
    unchecked: int = 0

    @property
    def counted(self) -> int:
        return self.caught + len(self.missed)

    @property
    def percent(self) -> float:
        return 100.0 * self.caught / self.counted if self.counted else 100.0


def configured_modules() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    return list(config["only_mutate"])


def dotted(module: str) -> str:
    return module.removesuffix(".py").replace("/", ".")


def changed_modules(base: str, modules: list[str]) -> list[str] | None:
    """The modules that differ from `base` (committed or not); None when git cannot tell."""
    try:
        out = subprocess.run(
            ["git", "diff", "--name-only", base, "--", *modules],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    touched = set(out.split())
    return [m for m in modules if m in touched]


def function_of(module: str, mutant: str) -> str:
    """`core.chat.answer.xǁAnswerShaperǁ_emit__mutmut_3` -> `AnswerShaper._emit`."""
    local = mutant.removeprefix(dotted(module) + ".")
    local = re.sub(r"__mutmut_\d+$", "", local)
    if local.startswith("xǁ"):
        _, cls, name = local.split("ǁ", 2)
        return f"{cls}.{name}"
    return local.removeprefix("x_")


def mutated_lines(diff: str) -> list[str]:
    return [
        line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")
    ]


def load_equivalents() -> dict[tuple[str, str, str], str]:
    entries = tomllib.loads(EQUIVALENTS.read_text()).get("equivalent", [])
    return {(e["module"], e["function"], e["mutated"].strip()): e["why"] for e in entries}


def score(
    module: str, equivalents: dict[tuple[str, str, str], str], used: set[tuple[str, str, str]]
) -> Score:
    # mutmut's own readers of its results (mutants/<module>.meta) and of a mutant's diff.
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code

    data = SourceFileMutationData(path=Path(module))
    data.load()
    result = Score(module)
    for name, exit_code in sorted(data.exit_code_by_key.items()):
        if exit_code in CAUGHT:
            result.caught += 1
            continue
        if exit_code not in MISSED:
            result.unchecked += 1
            continue
        diff = get_diff_for_mutant(name, path=module)
        keys = {(module, function_of(module, name), line) for line in mutated_lines(diff)}
        known = keys & equivalents.keys()
        if known:
            used.update(known)
            result.equivalent += 1
            continue
        result.missed.append((name, status_by_exit_code[exit_code], diff))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("modules", nargs="*", help="module paths (default: every configured module)")
    parser.add_argument("--changed", metavar="REF", help="only the modules that differ from REF")
    parser.add_argument("--gated-only", action="store_true", help="only modules listed in GATED")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MUTATE_JOBS", "2")))
    parser.add_argument("--report-only", action="store_true", help="print the scores, do not run mutmut")
    parser.add_argument(
        "--survivors", action="store_true", help="re-test only the mutants that survived the last run"
    )
    args = parser.parse_args()

    os.chdir(ROOT)
    configured = configured_modules()
    modules = args.modules or configured
    if args.gated_only:
        modules = [m for m in modules if m in GATED]
    unknown = [m for m in modules if m not in configured]
    if unknown:
        print(f"not configured for mutation (pyproject.toml [tool.mutmut] only_mutate): {unknown}")
        return 2
    if args.changed:
        touched = changed_modules(args.changed, modules)
        if touched is None:
            print(f"mutate: git cannot compare with {args.changed}; nothing mutated")
            return 0
        if not touched:
            print(f"mutate: no mutated module differs from {args.changed}")
            return 0
        modules = touched

    equivalents = load_equivalents()
    if not args.report_only:
        # A run killed while mutmut saved its results leaves an empty .meta that fails the next run.
        for meta in (ROOT / "mutants").rglob("*.meta"):
            if meta.stat().st_size == 0:
                meta.unlink()
                meta.with_suffix("").unlink(missing_ok=True)
        mutmut = [sys.executable, "-m", "mutmut", "run", "--max-children", str(args.jobs)]
        patterns = [f"{dotted(m)}.*" for m in modules]
        if args.survivors:
            patterns = [name for m in modules for name, _, _ in score(m, equivalents, set()).missed]
            if not patterns:
                print("mutate: no survivors to re-test")
        if patterns:
            run = subprocess.run(
                [*mutmut, *patterns], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            if run.returncode != 0:
                print(run.stdout[-3000:])
                print(f"mutate: mutmut failed ({run.returncode})")
                return run.returncode

    used: set[tuple[str, str, str]] = set()
    scores = [score(m, equivalents, used) for m in modules]

    failing = False
    for result in scores:
        for name, status, diff in result.missed:
            print(f"\n--- {status}: {name}\n{diff}")
    print(f"\n{'module':<40} {'mutants':>7} {'caught':>6} {'equiv':>5} {'missed':>6} {'score':>7}")
    for result in scores:
        total = result.counted + result.equivalent + result.unchecked
        flag = ""
        if result.unchecked:
            flag = f"  ({result.unchecked} not checked)"
            failing = True
        if result.percent < THRESHOLD:
            flag += f"  < {THRESHOLD:.0f}%"
            failing = True
        print(
            f"{result.module:<40} {total:>7} {result.caught:>6} {result.equivalent:>5} "
            f"{len(result.missed):>6} {result.percent:>6.1f}%{flag}"
        )
    stale = [key for key in equivalents if key[0] in modules and key not in used]
    for module, function, line in stale:
        print(
            f"mutate: equivalent entry matches no surviving mutant (remove it?): {module} {function}: {line}"
        )
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
