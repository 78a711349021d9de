#!/usr/bin/env bash
# The mixed gateway load (BENCHMARKS.md, first section), three runs per backend, summarised as
# median [min–max] per column. Run by hand on a quiet machine (about 8 minutes on 2 cores),
# PostgreSQL on 127.0.0.1:5432:
#   scripts/bench_mixed.sh                      # both backends, 60,000 messages, 1 apply worker
#   RUNS=3 BENCH_APPLY_WORKERS=4 BENCH_BACKENDS=postgres scripts/bench_mixed.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
export BENCH_MIX=mixed BENCH_MESSAGES=${BENCH_MESSAGES:-60000}
backends=${BENCH_BACKENDS:-postgres sqlite}
cargo bench --bench gateway --no-run >/dev/null 2>&1
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
for backend in $backends; do
  for run in $(seq "$runs"); do
    row=$(BENCH_BACKENDS=$backend cargo bench --bench gateway 2>/dev/null | grep -E '^\| (Postgres|Sqlite) ')
    echo "$backend run $run: $row" >&2
    echo "$row" >>"$rows"
  done
done
python3 - "$rows" <<'EOF'
import re, statistics, sys
# Columns of the bench's row: backend, max ok, max rate, max p50, max p99, max failed, backlog,
# apply rate, CPU, half rate, half p50, half p99, half failed, ack→applied p50, p99, rows, RSS.
wanted = [("max rate", 2), ("max p99", 4), ("apply rate", 7), ("CPU server / postgres / load", 8),
          ("half rate", 9), ("half p99", 11), ("ack→applied p50", 13), ("ack→applied p99", 14),
          ("failed (max + half)", None)]
by_backend = {}
for line in open(sys.argv[1]):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    by_backend.setdefault(cells[0], []).append(cells)
def number(cell):
    return float(re.match(r"[0-9.]+", cell).group(0))
def unit(cell):
    return cell.split(" ", 1)[1] if " " in cell else ""
def summary(values, u):
    fmt = (lambda v: f"{v:.0f}") if max(values) >= 100 else (lambda v: f"{v:.2f}")
    return f"{fmt(statistics.median(values))} [{fmt(min(values))}–{fmt(max(values))}] {u}".strip()
print("| backend | runs | " + " | ".join(name for name, _ in wanted) + " |")
print("|---" * (len(wanted) + 2) + "|")
for backend, runs in by_backend.items():
    cells = []
    for name, i in wanted:
        if i is None:
            cells.append(str(sum(int(r[5]) + int(r[12]) for r in runs)))
        elif name.startswith("CPU"):
            parts = [[float(p.strip().rstrip("%")) for p in r[i].split("/")] for r in runs]
            cells.append(" / ".join(f"{statistics.median(col):.0f}%" for col in zip(*parts)))
        else:
            cells.append(summary([number(r[i]) for r in runs], unit(runs[0][i])))
    print(f"| {backend} | {len(runs)} | " + " | ".join(cells) + " |")
EOF
