"""Tables generated from results/, never copied by hand.

A page marks each generated block:

    <!-- results:gift/moons/cpu claims -->
    ...generated text...
    <!-- /results -->

`results:` is followed by one or more results files (paths under results/ without `.json`, joined by
commas) and a view: `full`, `table` (the arms), `claims` (one study), `summary` (arms x studies) or
`verdicts` (claims x studies). Several files share a block only when they come from the same budget
and the same machine. A study's own tables derived from its results (fits, rankings) are a record in
the benchmark layout beside them (results/<study>/<budget>_analysis.json, written by
launch/study.py's `write_analysis`) and use the record views below.

A benchmark's record (`results/bench/NAME.json`, written by `python launch/bench.py NAME`, see
launch/benchmarks/_record.py) has its own views: `table` (its tables), `table:NAME` (one of them,
by its key in the record), `sentence` (its summary sentence and where, when and under what load it
was measured) and `bench` (tables and sentence).

    python launch/tables.py            # rewrite every block in README.md and docs/*.md
    python launch/tables.py --check    # exit 1 and name every block that differs from results/
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
from typing import Any, Callable, Mapping, Sequence

from engine.config import REPO_ROOT
from engine.files import write_atomically

RESULTS = os.path.join(REPO_ROOT, "results")
MARKER = re.compile(r"(^<!-- results:(?P<keys>[\w./,-]+)(?:\s+(?P<view>[\w:]+))?\s*-->\n)(?P<body>.*?)(^<!-- /results -->)",
                    re.S | re.M)
FENCE = re.compile(r"^```.*?^```", re.S | re.M)  # a marker shown inside a code block is an example
VIEWS = ("full", "table", "claims", "summary", "verdicts")


class TableError(Exception):
    """A block that cannot be generated: a missing results file, an unknown view, or results
    from different budgets or machines in one table."""


def default_pages() -> list[str]:
    return [os.path.join(REPO_ROOT, "README.md"), *sorted(glob.glob(os.path.join(REPO_ROOT, "docs", "*.md")))]


def load(key: str, root: str = RESULTS) -> dict[str, Any]:
    path = os.path.join(root, key + ".json")
    if not os.path.exists(path):
        raise TableError(f"results file {os.path.relpath(path, REPO_ROOT)} does not exist")
    with open(path) as handle:
        return json.load(handle)


# --- formatting ----------------------------------------------------------------------------

def _decimals(results: Mapping[str, Any]) -> int:
    return 1 if results["scale"] >= 100 else 3


def number(value: float | None, results: Mapping[str, Any], signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return format(value * results["scale"], f"{'+' if signed else ''}.{_decimals(results)}f")


def interval(summary: Mapping[str, Any], results: Mapping[str, Any], signed: bool = False) -> str:
    """'mean [low, high]' (the 95% t interval), or the mean alone for one seed."""
    text = number(summary["mean"], results, signed)
    if summary.get("low") is None:
        return text
    return f"{text} [{number(summary['low'], results, signed)}, {number(summary['high'], results, signed)}]"


def markdown(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _value(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


# --- views ---------------------------------------------------------------------------------

def claim_scale(claim: Mapping[str, Any], results: Mapping[str, Any]) -> Mapping[str, Any]:
    """The formatting of a claim's numbers: its own metric's scale where it names one."""
    return {"scale": claim.get("scale", results["scale"])}


def selection(results: Mapping[str, Any]) -> str:
    """The split that selects, and its metric where that is not the report metric."""
    metric = results.get("select_metric", results["metric"])
    return results["select_split"] + (f" {metric}" if metric != results["metric"] else "")


def by_draw(results: Mapping[str, Any]) -> bool:
    """Whether the results' unit is a (seed, draw) pair (launch/study.py's `Study.units`)."""
    return results.get("units") == "seed x draw"


def arms_table(results: Mapping[str, Any]) -> str:
    declared = sorted({key for arm in results["arms"] for key in arm["declared"]})
    columns = list(dict.fromkeys(label for arm in results["arms"] for label in arm.get("columns", {})))
    metric = f"{results['report_split']} {results['metric']}{' (' + results['unit'] + ')' if results['unit'] else ''}"
    units = "seeds x draws" if by_draw(results) else "seeds"
    header = ["arm", f"{metric}, mean [95% CI]", *columns, units, f"{selection(results)} (selects)",
              "selected", *declared]
    rows = []
    for arm in results["arms"]:
        selected = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in arm["selected"].items()) or "untuned"
        extra = [interval(arm["columns"][c], arm["columns"][c]) if c in arm.get("columns", {}) else ""
                 for c in columns]
        rows.append([arm["label"], interval(arm["summary"], results), *extra, str(arm["summary"]["n"]),
                     number(arm["select_summary"]["mean"], results), selected,
                     *(_value(arm["budget"].get(key, "")) for key in declared)])
    text = markdown(rows, header)
    reasons = [f"- {arm['label']}: {key}: {why}" for arm in results["arms"] for key, why in arm["declared"].items()]
    if reasons:
        text += "\nDeclared budget differences (every other budget entry is equal across arms):\n" + \
                "\n".join(reasons) + "\n"
    return text


def claims_table(results: Mapping[str, Any]) -> str:
    unit = "points" if results["scale"] == 100 else results["metric"]
    if any(claim.get("metric", results["metric"]) != results["metric"] for claim in results["claims"]):
        unit += ", or the claim's own metric"
    header = ["claim", f"difference ({unit}), mean [95% CI]", "wins", "verdict", "report-split SE vs effect/3"]
    rows = []
    for claim in results["claims"]:
        resolution = claim.get("resolution")
        if resolution:
            se = (f"{number(resolution['se'], results)} vs {number(resolution['effect_third'], results)}: "
                  + ("resolves it" if resolution["adequate"] else "too small to resolve it")
                  + f" ({resolution['examples']:,} examples)")
        else:
            se = "n/a"
        rows.append([claim["text"], interval(claim["difference"], claim_scale(claim, results), signed=True),
                     f"{claim['wins']}/{len(claim['seeds'])}", f"**{claim['verdict']}**", se])
    text = markdown(rows, header)
    notes = [f"- {claim['text']}: {claim['tuning_note']}" for claim in results["claims"] if claim.get("tuning_note")]
    if notes:
        text += "\nArms tuned over different sweeps, and why the comparison is fair:\n" + "\n".join(notes) + "\n"
    return text


def header_lines(results: Mapping[str, Any]) -> list[str]:
    budget, prov = results["budget"], results["provenance"]
    sweep = "; ".join(f"{axis} in {{{', '.join(values)}}}" for axis, values in budget["sweep"].items())
    seeds = ",".join(map(str, budget["seeds"]))
    tuning = ",".join(map(str, budget["tuning_seeds"]))
    versions = "; ".join(f"torch {v['torch']}" + (f", CUDA {v['cuda']}" if v.get("cuda") else "")
                         for v in prov["versions"])
    commits = ", ".join(c[:10] for c in prov["commits"]) + (" (uncommitted changes)" if prov["dirty"] else "")
    lines = [f"Budget `{budget['name']}`" + (f" ({budget['note']})" if budget["note"] else "")
             + f"; seeds {seeds}, paired across arms (same data order and starting model)"
             + (f"; {results['draws']} sample draws per run, paired by index: every mean, interval and claim is "
                + ("over (seed, draw) units" if by_draw(results) else "over seeds, each the mean of its draws")
                if results.get("draws", 1) > 1 else "") + "."]
    if sweep:
        lines.append(f"Tuning: {sweep}, the same values for every tuned arm, scored on `{selection(results)}` "
                     f"over seeds {tuning}; `{results['report_split']}` is read once, for the selected configuration.")
    lines.append(f"Machine: {results['machine']}, {'/'.join(map(str, prov['threads']))} thread(s) per run; "
                 f"{versions}; commit {commits}; {prov['runs']} runs in the table ({prov['wall_s'] / 60:.1f} min) "
                 f"and {prov['tuning_runs']} other sweep runs ({prov['tuning_wall_s'] / 60:.1f} min).")
    lines += [f"Command: `{command}`" for command in prov["commands"]]
    return lines


def full(results: Mapping[str, Any]) -> str:
    parts = [f"# {results['title']}", "", *[line + "  " for line in header_lines(results)], ""]
    parts += [note for note in results["notes"]] + ([""] if results["notes"] else [])
    parts += ["## Arms", "", arms_table(results), "## Claims", "", claims_table(results)]
    return "\n".join(parts)


def _same_table(many: Sequence[Mapping[str, Any]]) -> None:
    budgets = {r["budget"]["name"] for r in many}
    machines = {r["machine"] for r in many}
    if len(budgets) > 1 or len(machines) > 1:
        raise TableError(f"results from different budgets {sorted(budgets)} or machines {sorted(machines)} "
                         "cannot share a table")


def _column(results: Mapping[str, Any]) -> str:
    return results["study"].split("/")[-1]


def _grid(many: Sequence[Mapping[str, Any]], items: str, key: str, head: str,
          cell: Callable[[Mapping[str, Any], Mapping[str, Any]], str]) -> str:
    """Rows named by each result's `items` entries (by `key`, in first-seen order) x one column per
    study; an entry a study lacks is an empty cell."""
    _same_table(many)
    names = list(dict.fromkeys(entry[key] for r in many for entry in r[items]))
    rows = []
    for name in names:
        row = [name]
        for results in many:
            entry = next((e for e in results[items] if e[key] == name), None)
            row.append(cell(entry, results) if entry else "")
        rows.append(row)
    return markdown(rows, [head, *(_column(r) for r in many)])


def summary_table(many: Sequence[Mapping[str, Any]]) -> str:
    """Arms (rows, by label) x studies (columns): report metric, mean [95% CI]."""
    return _grid(many, "arms", "label", "arm", lambda arm, results: interval(arm["summary"], results))


def verdicts_table(many: Sequence[Mapping[str, Any]]) -> str:
    """Claims (rows, by text) x studies: paired difference [95% CI], wins, verdict."""
    return _grid(many, "claims", "text", "claim",
                 lambda claim, results: f"{interval(claim['difference'], claim_scale(claim, results), signed=True)}, "
                                        f"{claim['wins']}/{len(claim['seeds'])}: **{claim['verdict']}**")


# --- benchmark records -------------------------------------------------------------------

BENCH_VIEWS = ("table", "sentence", "bench")


def is_bench(results: Mapping[str, Any]) -> bool:
    return str(results.get("schema", "")).startswith("gintrain.bench/")


def bench_tables(results: Mapping[str, Any], only: str | None = None) -> str:
    """Each table of the record (or the one named `only`), every cell its column's template
    formatted with the row."""
    if only is not None and only not in results["tables"]:
        raise TableError(f"the benchmark record of {results['benchmark']} has no table {only!r}; "
                         f"it has {sorted(results['tables'])}")
    parts = []
    for key, spec in results["tables"].items():
        if only is not None and key != only:
            continue
        rows = [[template.format(**row) for _, template in spec["columns"]] for row in spec["rows"]]
        text = markdown(rows, [label for label, _ in spec["columns"]])
        parts.append(f"{spec['title']}:\n\n{text}" if spec.get("title") else text)
    return "\n".join(parts)


def bench_caption(results: Mapping[str, Any]) -> str:
    """Where, when and how busy: the command, machine, threads, versions, commit, load and wall time."""
    prov, load = results["provenance"], results["load"]
    cuda = prov["versions"].get("cuda")
    commit = (prov["commit"] or "unknown")[:10] + (" with uncommitted changes" if prov["dirty"] else "")
    busy = (f"load average {load['start'][0]:.2f} at the start and {load['end'][0]:.2f} at the end (1 minute, "
            f"{load['cpus']} CPUs)") if load["start"] and load["end"] else "load average not available"
    return (f"Measured by `{prov['command']}` on {prov['device']['type']}: {prov['device']['name']}, "
            f"{prov['threads']} thread(s), torch {prov['versions']['torch']}{f', CUDA {cuda}' if cuda else ''}, "
            f"commit {commit}, {results['finished'][:10]}; {busy}; {prov['wall_s'] / 60:.1f} min.")


def bench_view(results: Mapping[str, Any], view: str) -> str:
    if view.startswith("table:"):
        return bench_tables(results, view.split(":", 1)[1])
    if view not in BENCH_VIEWS:
        raise TableError(f"unknown view {view!r} for the benchmark record of {results['benchmark']}; "
                         f"views: {BENCH_VIEWS}")
    if view == "table":
        return bench_tables(results)
    if view == "sentence" and not results["summary"]:
        raise TableError(f"the benchmark record of {results['benchmark']} has no summary sentence")
    sentence = results["summary"].format(**results["figures"]) + " " if results["summary"] else ""
    text = sentence + bench_caption(results) + "\n"
    tables = bench_tables(results)
    return text if view == "sentence" or not tables else tables + "\n" + text


def render(many: Sequence[Mapping[str, Any]], view: str = "table") -> str:
    if any(is_bench(results) for results in many):
        if len(many) != 1:
            raise TableError("a benchmark record shows alone, one block per file")
        return bench_view(many[0], view)
    if view not in VIEWS:
        raise TableError(f"unknown view {view!r}; views: {VIEWS}")
    if view in ("summary", "verdicts"):
        return (summary_table if view == "summary" else verdicts_table)(many)
    if len(many) != 1:
        raise TableError(f"view {view!r} shows one study; use 'summary' or 'verdicts' for several")
    return {"full": full, "table": arms_table, "claims": claims_table}[view](many[0])


# --- the markers ---------------------------------------------------------------------------

def blocks(text: str) -> list[re.Match]:
    """The marked blocks of a page, outside code blocks."""
    fences = [m.span() for m in FENCE.finditer(text)]
    return [m for m in MARKER.finditer(text) if not any(a <= m.start() < b for a, b in fences)]


def generated(match: re.Match, root: str = RESULTS) -> str:
    """What a marked block should hold, markers included."""
    many = [load(key, root) for key in match.group("keys").split(",")]
    return match.group(1) + render(many, match.group("view") or "table") + match.group(5)


def regenerate(text: str, root: str = RESULTS) -> str:
    """`text` with every marked block rewritten from the results under `root`."""
    out, last = [], 0
    for match in blocks(text):
        out += [text[last:match.start()], generated(match, root)]
        last = match.end()
    return "".join(out) + text[last:]


def stale(pages: Sequence[str], root: str = RESULTS) -> list[str]:
    """The pages whose marked blocks differ from what `root` generates (each with the block's key)."""
    found = []
    for page in pages:
        with open(page) as handle:
            text = handle.read()
        for match in blocks(text):
            if generated(match, root) != match.group(0):
                found.append(f"{os.path.relpath(page, REPO_ROOT)}: results:{match.group('keys')}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="*", help="markdown files (default: README.md and docs/*.md)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    parser.add_argument("--results", default=RESULTS, help="the results folder")
    args = parser.parse_args(argv)
    pages = args.pages or default_pages()
    try:
        if args.check:
            found = stale(pages, args.results)
            for entry in found:
                print(f"stale: {entry} (run python launch/tables.py)", file=sys.stderr)
            return 1 if found else 0
        for page in pages:
            with open(page) as handle:
                text = handle.read()
            new = regenerate(text, args.results)
            if new != text:
                write_atomically(page, new)
                print(f"rewrote the generated blocks of {os.path.relpath(page, REPO_ROOT)}")
    except TableError as error:
        print(f"tables: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
