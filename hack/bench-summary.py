#!/usr/bin/env python3
"""The summary lines of docs/benchmarks.md as a table: where each bar stands, at a glance.

  hack/bench-summary.py [docs/benchmarks.md] [--check]

Each line has the form `P<n> <what>: <our figure> vs <anchor figure> = <ratio> (bar <bar>) [command]`
(or `(no bar ...)` for a figure kept for context). Prints one row per line: the figure, its
bar, met / not met / -, and the command. With --check, exits 1 when a line does not have that
form, a bar says neither "met" nor "not met", or one of P1..P9 has no line.
"""
import re
import sys

ROOT = __file__.rsplit("/hack/", 1)[0]
LINE = re.compile(r"^(P\d+) ([^:]+): (.*) \[([^\]]+)\]$")


def bar_of(body):
    """The text of the last `(bar ...)` or `(no bar ...)` group, parentheses balanced."""
    start = max(body.rfind("(bar "), body.rfind("(no bar"))
    if start < 0:
        return None
    depth = 0
    for i in range(start, len(body)):
        depth += {"(": 1, ")": -1}.get(body[i], 0)
        if depth == 0:
            return body[start + 1:i]
    return None


def parse(path):
    rows, problems = [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if line.startswith("## "):
                break  # the summary is above the first section
            if not re.match(r"^P\d+ ", line):
                continue
            m = LINE.match(line)
            if not m:
                problems.append(f"{path}:{n}: not `P<n> <what>: ... [command]`: {line[:80]}")
                continue
            pid, what, body, command = m.groups()
            bar = bar_of(body)
            if " vs " not in body or " = " not in body or bar is None:
                problems.append(f"{path}:{n}: {pid} lacks ' vs ', ' = ' or a (bar ...) group")
                continue
            if bar.startswith("no bar"):
                status = "-"
            elif "not met" in bar:
                status = "not met"
            elif re.search(r"\bmet\b", bar):
                status = "met"
            else:
                problems.append(f"{path}:{n}: {pid}: the bar says neither met nor not met: ({bar})")
                continue
            ratio = body.split(" = ", 1)[1]
            rows.append((pid, what, ratio.split(" (", 1)[0].split(";", 1)[0], bar.split(":", 1)[0], status, command))
    seen = {r[0] for r in rows}
    problems += [f"{path}: no summary line for P{i}" for i in range(1, 10) if f"P{i}" not in seen]
    return rows, problems


def main():
    args = [a for a in sys.argv[1:] if a != "--check"]
    path = args[0] if args else f"{ROOT}/docs/benchmarks.md"
    rows, problems = parse(path)
    for pid, what, ratio, bar, status, command in rows:
        print(f"{pid:<4} {status:<8} {what[:48]:<48}  {ratio[:40]:<40}  {bar[:30]}")
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems and "--check" in sys.argv else 0


if __name__ == "__main__":
    sys.exit(main())
