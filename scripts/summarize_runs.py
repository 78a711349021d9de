#!/usr/bin/env python3
"""Summarises several runs of one benchmark's markdown output into one.

Reads the runs' outputs (files named on the command line, one per run). Title lines and table
headers come from the first run. Table rows are matched by their first cell (the backend); a cell
that is a number with the same unit in every run becomes `median [min–max] unit`, a cell that is
the same in every run stays as it is, and any other cell shows each run's value, `a · b · c`.
"""
import re
import statistics
import sys

NUMBER = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(\s.*)?$")


def tables(text):
    """Lines of a run: ('text', line) or ('row', cells) or ('head', line)."""
    out = []
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if set(line.replace("|", "").strip()) <= set("-"):
                out.append(("head", line))
            elif out and out[-1][0] == "text" or not out:
                out.append(("head", line))
            else:
                out.append(("row", cells))
        else:
            out.append(("text", line))
    return out


def fmt(value, decimals):
    return f"{value:.{decimals}f}"


def summary(cells):
    matches = [NUMBER.match(c) for c in cells]
    if all(matches) and len({(m.group(2) or "") for m in matches}) == 1:
        values = [float(m.group(1)) for m in matches]
        decimals = max(len(m.group(1).split(".")[1]) if "." in m.group(1) else 0 for m in matches)
        unit = matches[0].group(2) or ""
        if len(set(values)) == 1:
            return cells[0]
        return f"{fmt(statistics.median(values), decimals)} [{fmt(min(values), decimals)}–{fmt(max(values), decimals)}]{unit}"
    if len(set(cells)) == 1:
        return cells[0]
    return " · ".join(cells)


def main(paths):
    runs = [tables(open(p, encoding="utf-8").read()) for p in paths]
    first = runs[0]
    rows_of = [
        {cells[0]: cells for kind, cells in run if kind == "row"} for run in runs
    ]
    for kind, item in first:
        if kind in ("text", "head"):
            print(item)
            continue
        key = item[0]
        per_run = [rows.get(key) for rows in rows_of]
        per_run = [r for r in per_run if r is not None and len(r) == len(item)]
        cells = [key] + [summary([r[i] for r in per_run]) for i in range(1, len(item))]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
