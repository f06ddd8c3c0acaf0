#!/usr/bin/python3
"""Print the tables and ratios of bench/run from its raw result files.

Usage: report.py RESULTS_TSV MEMORY_TSV WORKERS SMALL_ROWS BIG_ROWS CONNECTIONS
                 MEMORY_REQUESTS

RESULTS_TSV has one row per measured run with the columns of RESULT_COLUMNS.
A run whose status is not "ok" is left out of the medians. MEMORY_TSV has one
row per worker and sample of the memory check: the sample's threshold (the
requests every worker had served at least), the PID, the requests this
worker had served, and its private memory in KiB. The other arguments name
the main lines' settings, which the ratios compare. Each figure is the median
of the valid runs of its set, taken per column, so one row's figures can come
from different runs.
"""

import csv
import statistics
import sys

RESULT_COLUMNS = (
    "line", "route", "workers", "rows", "connections", "run", "requests", "duration_s",
    "rps", "p50_us", "p99_us", "cpu_s_per_1000", "memory_kib", "status",
)

LINE_ORDER = ("userops", "frontend", "stack", "database", "php")
ROUTE_ORDER = ("confirm", "cancel", "resend", "get", "mix")

LINE_TITLES = {
    "userops": "userops",
    "frontend": "front-end ceiling (no-op responder)",
    "stack": "stack ceiling (confirm SQL responder)",
    "database": "database ceiling (C client, no HTTP)",
    "php": "PHP-FPM peer",
}

TARGET_MEMORY_KIB = 4 * 1024


def read_results(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def median_of(runs, column):
    values = [float(run[column]) for run in runs if run[column] not in ("", "-")]
    return statistics.median(values) if values else None


def max_memory_kib(run):
    values = [int(value) for value in run["memory_kib"].split(",") if value]
    return max(values) if values else None


class RunSet:
    """The runs of one line, route, worker count, row count and connection count."""

    def __init__(self, runs):
        self.all = runs
        self.valid = [run for run in runs if run["status"] == "ok"]

    def median(self, column):
        return median_of(self.valid, column)

    def memory_mib(self):
        values = [max_memory_kib(run) for run in self.valid]
        values = [value for value in values if value is not None]
        return statistics.median(values) / 1024 if values else None

    def problems(self):
        return [f"run {run['run']}: {run['status']}" for run in self.all if run["status"] != "ok"]


def order_index(order, name):
    return order.index(name) if name in order else len(order)


def group(results):
    """Return the run sets by key, ordered by line, route, rows, workers and connections."""
    sets = {}
    for run in results:
        key = (run["line"], run["route"], int(run["workers"]), int(run["rows"]),
               int(run["connections"]))
        sets.setdefault(key, []).append(run)
    keys = sorted(sets, key=lambda key: (order_index(LINE_ORDER, key[0]),
                                         order_index(ROUTE_ORDER, key[1]), key[3], key[2], key[4]))
    return {key: RunSet(sets[key]) for key in keys}


def cell(value, digits):
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def ms(value_us):
    return None if value_us is None else value_us / 1000


def print_table(sets, with_line):
    """Print one Markdown row per run set; with_line adds the line and route columns."""
    head = "| line | route " if with_line else ""
    print(f"{head}| workers | finished rows | connections | requests/s | p50 ms | p99 ms |"
          " CPU s per 1,000 requests | private memory per worker, MiB (max) | valid runs |")
    print("| --- " * (11 if with_line else 9) + "|")
    for key, run_set in sets.items():
        line, route, workers, rows, connections = key
        memory = run_set.memory_mib()
        cells = [LINE_TITLES.get(line, line), route] if with_line else []
        cells += [
            str(workers),
            f"{rows:,}",
            f"{workers} (threads)" if line == "database" else str(connections),
            cell(run_set.median("rps"), 0),
            cell(ms(run_set.median("p50_us")), 2),
            cell(ms(run_set.median("p99_us")), 2),
            cell(run_set.median("cpu_s_per_1000"), 3),
            cell(memory, 2) if memory is not None else "-",
            f"{len(run_set.valid)} of {len(run_set.all)}",
        ]
        print("| " + " | ".join(cells) + " |")


def print_memory_table(memory_path):
    try:
        with open(memory_path, newline="", encoding="utf-8") as handle:
            samples = list(csv.DictReader(handle, delimiter="\t"))
    except FileNotFoundError:
        return None
    if not samples:
        return None
    print("| every worker served at least | worker PID | requests served by this worker |"
          " private memory, KiB |")
    print("| --- | --- | --- | --- |")
    for sample in samples:
        print(f"| {int(sample['sample']):,} | {sample['pid']} | {int(sample['requests']):,} |"
              f" {int(sample['private_kib']):,} |")
    return samples


class Verdicts:
    """Collect one line per ratio or target."""

    def __init__(self):
        self.lines = []

    def ratio(self, text, value, target=None, met=None):
        if value is None:
            self.lines.append(f"- {text}: n/a (a line is missing or has no valid run)")
            return
        suffix = ""
        if target is not None:
            suffix = f" (target {target}: {'met' if met(value) else 'missed'})"
        self.lines.append(f"- {text}: {value:.2f}{suffix}")

    def note(self, text):
        self.lines.append(f"- {text}")


def divide(numerator, denominator):
    if numerator is None or denominator in (None, 0):
        return None
    return numerator / denominator


def find(sets, line, route, workers=None, rows=None, connections=None):
    """Return the run set that matches, preferring the one with the most valid runs, or None."""
    matches = [
        run_set for (l, r, w, n, c), run_set in sets.items()
        if l == line and r == route and (workers is None or w == workers)
        and (rows is None or n == rows) and (connections is None or c == connections)
    ]
    matches.sort(key=lambda run_set: len(run_set.valid), reverse=True)
    return matches[0] if matches else None


def median(run_set, column):
    return run_set.median(column) if run_set is not None else None


def print_ratios(sets, samples, workers, small_rows, big_rows, connections, memory_requests):
    verdicts = Verdicts()
    base = dict(workers=workers, rows=small_rows, connections=connections)
    userops = find(sets, "userops", "confirm", **base)
    stack = find(sets, "stack", "confirm", **base)
    frontend = find(sets, "frontend", "confirm", **base)
    database = find(sets, "database", "confirm", workers=workers, rows=small_rows)
    php = find(sets, "php", "confirm", **base)

    verdicts.ratio("userops confirm / stack ceiling, requests/s",
                   divide(median(userops, "rps"), median(stack, "rps")), ">= 0.8",
                   lambda value: value >= 0.8)
    verdicts.ratio("userops confirm / PHP-FPM confirm, requests/s",
                   divide(median(userops, "rps"), median(php, "rps")), "> 1",
                   lambda value: value > 1)
    verdicts.ratio("userops / PHP-FPM, application CPU per confirm",
                   divide(median(userops, "cpu_s_per_1000"), median(php, "cpu_s_per_1000")),
                   "<= 0.33", lambda value: value <= 1 / 3)
    at_32 = find(sets, "userops", "confirm", workers=workers, rows=small_rows, connections=32)
    verdicts.ratio("userops confirm p99 / p50 at 32 connections",
                   divide(median(at_32, "p99_us"), median(at_32, "p50_us")), "<= 3",
                   lambda value: value <= 3)
    big = find(sets, "userops", "confirm", workers=workers, rows=big_rows, connections=connections)
    verdicts.ratio(f"userops confirm p50 at {big_rows:,} / at {small_rows:,} finished rows",
                   divide(median(big, "p50_us"), median(userops, "p50_us")), "<= 1.2",
                   lambda value: value <= 1.2)
    verdicts.ratio("userops confirm / front-end ceiling, requests/s",
                   divide(median(userops, "rps"), median(frontend, "rps")))
    verdicts.ratio("stack ceiling / database ceiling, requests/s",
                   divide(median(stack, "rps"), median(database, "rps")))

    if samples:
        by_sample = {}
        for sample in samples:
            by_sample.setdefault(sample["sample"], []).append(sample)
        first = by_sample.get(str(memory_requests // 2))
        last = by_sample.get(str(memory_requests))
        if first and last:
            peak = max(int(sample["private_kib"]) for sample in last)
            verdicts.ratio(f"largest private memory of a worker after {memory_requests:,} requests, MiB",
                           peak / 1024, "< 4", lambda value: value * 1024 < TARGET_MEMORY_KIB)
            served_first = {sample["pid"]: sample["requests"] for sample in first}
            served_last = {sample["pid"]: sample["requests"] for sample in last}
            if served_first == served_last:
                # Every worker passed both thresholds before one check, so no request came between.
                verdicts.note(f"growth of a worker from {memory_requests // 2:,} to"
                              f" {memory_requests:,} requests: not measured, both samples"
                              f" were taken after the same requests")
            else:
                growth = {sample["pid"]: int(sample["private_kib"]) for sample in last}
                for sample in first:
                    growth[sample["pid"]] = growth.get(sample["pid"], 0) - int(sample["private_kib"])
                worst = max(growth.values())
                verdicts.note(f"largest growth of one worker from {memory_requests // 2:,} to"
                              f" {memory_requests:,} requests: {worst} KiB"
                              f" (target: none, {'met' if worst <= 0 else 'missed'})")
        else:
            verdicts.note("memory check: the workers did not reach the requests of both samples")
    print("\n".join(verdicts.lines))


def main():
    if len(sys.argv) != 8:
        print("usage: report.py RESULTS_TSV MEMORY_TSV WORKERS SMALL_ROWS BIG_ROWS"
              " CONNECTIONS MEMORY_REQUESTS", file=sys.stderr)
        sys.exit(2)
    results_path, memory_path = sys.argv[1:3]
    workers, small_rows, big_rows, connections, memory_requests = map(int, sys.argv[3:8])
    sets = group(read_results(results_path))
    main_sets = {key: run_set for key, run_set in sets.items()
                 if key[2] == workers and key[3] == small_rows}
    scaling_sets = {key: run_set for key, run_set in sets.items()
                    if key[0] == "userops" and key[1] == "confirm" and key[4] == connections}

    print(f"### Lines ({workers} workers, {small_rows:,} finished rows; medians)")
    print()
    print_table(main_sets, with_line=True)
    print()
    print("### Scaling of userops confirm (medians)")
    print()
    print_table(scaling_sets, with_line=False)
    print()
    print(f"### Memory check (samples once every worker has served {memory_requests // 2:,}"
          f" and {memory_requests:,} requests)")
    print()
    samples = print_memory_table(memory_path)
    if samples is None:
        print("No memory samples.")
    print()
    print("### Ratios and targets")
    print()
    print_ratios(sets, samples, workers, small_rows, big_rows, connections, memory_requests)
    problems = [f"{key[0]} {key[1]} ({key[2]} workers, {key[3]:,} rows): {problem}"
                for key, run_set in sets.items() for problem in run_set.problems()]
    if problems:
        print()
        print("Runs left out of the medians:")
        for problem in problems:
            print(f"- {problem}")


if __name__ == "__main__":
    main()
