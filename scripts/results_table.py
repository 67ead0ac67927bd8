"""Write the README's results table from the measured results, or check that it matches them.

    python scripts/results_table.py [--check]

The table is the BD-rate table of results/kodak/bdrate.md (every codec against JPEG 4:2:0), built
from results/kodak/results.json by nic eval's own code, and goes between the marker lines
`<!-- results:begin -->` and `<!-- results:end -->` of README.md. Run it after re-measuring with
the `nic eval` command in README.md's Results section (a rerun measures only what changed).
`--check` writes nothing and fails if the README's table differs (tests/test_results.py does the same).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nic.eval.report import markdown, vs_anchor  # noqa: E402
from nic.writes import atomic_write  # noqa: E402

RESULTS = ROOT / "results" / "kodak" / "results.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def table(results: dict) -> str:
    """The Markdown table of every curve in a results.json against its anchor, as bdrate.md shows it."""
    bd = dict(results["bdrate"])
    base = bd.pop("anchor")
    return markdown(vs_anchor(results["curves"], bd, base))


def with_table(readme: str, results: dict) -> str:
    """The README text with `table(results)` between the markers (each on a line of its own)."""
    head, begin, rest = readme.partition(BEGIN + "\n")
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"README.md lacks the lines {BEGIN} and {END} around the results table")
    return head + begin + table(results) + end + tail


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only check that README.md's table is up to date")
    args = p.parse_args(argv)
    try:
        results = json.loads(RESULTS.read_text())
        readme = README.read_text()
        new = with_table(readme, results)
    except KeyError as e:
        print(f"results_table: {RESULTS.name} has no {e}: not the results.json of nic eval", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"results_table: {e}", file=sys.stderr)
        return 1
    if args.check:
        if new != readme:
            print(f"results_table: {README.name}'s results table differs from the one {RESULTS.name} gives; "
                  "run python scripts/results_table.py", file=sys.stderr)
            return 1
        return 0
    atomic_write(README, new.encode(), force=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
