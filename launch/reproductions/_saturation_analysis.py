"""The saturation study's analysis over seeds: Eq. 1 on each seed's upper hull with its degeneracy
stated, a fit-free test of diminishing returns along a chain of training lengths, the hull fit's
held-out error against an all-points fit, and layer 1 against the last layer. Every verdict comes
from launch/seed_statistics.py, so "supported" means what it means for the protocol's claims."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from launch import seed_statistics as statistics, tables
from launch.reproductions._saturation_fits import holdout_error, saturation_fit, upper_convex_hull

Table = dict[str, Any]


def per_seed(results: Mapping[str, Any], arm: str, metric: str) -> dict[int, float]:
    """{seed: value} of one arm's report-split metric (e.g. 'accuracy', 'fewshot/digits/25shot')."""
    key = f"{results['report_split']}/{metric}"
    runs = next(a for a in results["arms"] if a["name"] == arm)["runs"]
    return {r["seed"]: float(r["metrics"][key]) for r in runs if key in r["metrics"]}


def points(results: Mapping[str, Any], downstream: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per seed, the (upstream, downstream) accuracies of every arm (arms in the study's order)."""
    out = {}
    for seed in results["budget"]["seeds"]:
        pairs = [(per_seed(results, a["name"], "accuracy").get(seed),
                  per_seed(results, a["name"], downstream).get(seed)) for a in results["arms"]]
        pairs = [p for p in pairs if None not in p]
        out[seed] = (np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]))
    return out


def hull_fit(us: np.ndarray, ds: np.ndarray) -> dict[str, Any]:
    """Eq. 1 on the upper hull of the points, or why there is none (fewer than 3 hull vertices)."""
    hull = upper_convex_hull(us, ds)
    if len(hull) < 3:
        return {"hull": hull, "fit": None, "degenerate": f"{len(hull)} hull points (a fit needs 3)"}
    fit = saturation_fit(1 - us[hull], 1 - ds[hull])
    return {"hull": hull, "fit": fit, "degenerate": fit.degenerate}


def interval(summary: statistics.Summary | None, scale: float = 100.0, signed: bool = False) -> str:
    """'mean [low, high]' (launch/tables.py's format: 1 decimal in points, 3 at scale 1)."""
    return "n/a" if summary is None else tables.interval(summary.as_dict(), {"scale": scale}, signed)


def frontier_table(results: Mapping[str, Any], tasks: Mapping[str, tuple[str, int]], shots: int) -> Table:
    """Per task: Eq. 1 on each seed's hull; the saturation value 1 - e_IR over the seeds whose fit
    is not degenerate; a verdict only when every seed's fit describes a trend."""
    rows = []
    for task, (distance, _) in tasks.items():
        fits = {seed: hull_fit(us, ds) for seed, (us, ds) in points(results, f"fewshot/{task}/{shots}shot").items()}
        good = {s: f["fit"] for s, f in fits.items() if f["fit"] is not None and not f["degenerate"]}
        reasons: dict[str, int] = {}
        for f in fits.values():
            for reason in filter(None, (f["degenerate"] or "").split("; ")):
                reason = reason.split(" (")[0]
                reasons[reason] = reasons.get(reason, 0) + 1
        saturation = statistics.summarize([f.saturation for f in good.values()]) if good else None
        e_ir = statistics.summarize([f.e_ir for f in good.values()]) if good else None
        if len(good) < len(fits):
            verdict = f"inconclusive: degenerate in {len(fits) - len(good)}/{len(fits)} seeds"
        else:
            verdict, _ = statistics.judge(e_ir)
            verdict += " (e_IR > 0)" if verdict == statistics.SUPPORTED else ""
        best = max(statistics.summarize(list(per_seed(results, a["name"], f"fewshot/{task}/{shots}shot").values())).mean
                   for a in results["arms"])
        rows.append({
            "task": task, "distance": distance, "best": f"{100 * best:.1f}",
            "hull": "/".join(str(len(f["hull"])) for f in fits.values()),
            "k": _spread([f["fit"].k for f in fits.values() if f["fit"]], ".2f"),
            "alpha": _spread([f["fit"].alpha for f in fits.values() if f["fit"]], ".2f"),
            "fitted": f"{len(good)}/{len(fits)}", "degenerate_seeds": len(fits) - len(good), "seeds": len(fits),
            "saturation": interval(saturation),
            "why": ", ".join(f"{reason} in {n}" for reason, n in reasons.items()) or "-", "verdict": f"**{verdict}**"})
    return _table(f"Eq. 1 on the upper hull of each seed's runs ({shots}-shot, %): 'saturates below 100%' needs a "
                  "non-degenerate fit in every seed and e_IR's 95% CI above 0", [
                      ("task", "{task}"), ("distance", "{distance}"), ("best arm mean", "{best}"),
                      ("hull points per seed", "{hull}"), ("k (min-max over seeds)", "{k}"),
                      ("alpha (min-max)", "{alpha}"), ("non-degenerate fits", "{fitted}"),
                      ("1 - e_IR over those, mean [95% CI]", "{saturation}"), ("degenerate because", "{why}"),
                      ("verdict", "{verdict}")], rows)


def returns_table(results: Mapping[str, Any], tasks: Mapping[str, tuple[str, int]], shots: int,
                  chain: Sequence[str], frontier: Table) -> Table:
    """Fit-free: along `chain` (short, mid, long training of one model) the downstream points gained
    per upstream point, first step against second, paired over seeds. 'Downstream saturates while
    upstream improves' is supported when upstream improves from mid to long, the return per upstream
    point falls (the paired difference's CI above 0), and every seed's Eq. 1 fit is non-degenerate;
    a downstream that does not rise from short to mid has nothing to saturate (inconclusive)."""
    short, mid, long = chain
    us = [per_seed(results, arm, "accuracy") for arm in chain]
    upstream = statistics.paired(us[2], us[1])
    fits = {row["task"]: row for row in frontier["rows"]}
    rows = []
    for task in tasks:
        ds = [per_seed(results, arm, f"fewshot/{task}/{shots}shot") for arm in chain]
        # A return is undefined where upstream accuracy did not move (the smoke budget's chance-level runs).
        seeds = [s for s in sorted(set.intersection(*(set(d) for d in us + ds)))
                 if us[1][s] != us[0][s] and us[2][s] != us[1][s]]
        if not seeds:
            rows.append({"task": task, "gain": interval(statistics.paired(ds[2], ds[1]).difference, signed=True),
                         "first": "n/a", "second": "n/a", "drop": "n/a", "wins": "0/0",
                         "verdict": "**inconclusive: upstream accuracy did not move along the chain**"})
            continue
        first = {s: (ds[1][s] - ds[0][s]) / (us[1][s] - us[0][s]) for s in seeds}
        second = {s: (ds[2][s] - ds[1][s]) / (us[2][s] - us[1][s]) for s in seeds}
        drop = statistics.paired(first, second)
        gain = statistics.paired(ds[2], ds[1])
        degenerate = fits[task]["degenerate_seeds"]
        rise, _ = statistics.judge(statistics.summarize(list(first.values())))
        if upstream.verdict != statistics.SUPPORTED:
            overall = f"inconclusive: upstream gain mid -> long is {upstream.verdict}"
        elif rise != statistics.SUPPORTED:
            # Nothing to saturate: a flat or falling downstream is not a frontier levelling off.
            overall = ("inconclusive: downstream " + ("falls" if rise == statistics.CONTRADICTED else "does not rise")
                       + " as upstream improves from short to mid")
        elif drop.verdict == statistics.CONTRADICTED:
            overall = "contradicted: returns grow"
        elif drop.verdict != statistics.SUPPORTED:
            overall = "inconclusive: the fall in returns crosses 0" if drop.difference.n >= statistics.MIN_SEEDS \
                else f"inconclusive: {drop.difference.n} seeds"
        elif degenerate:
            overall = f"inconclusive: returns fall, but Eq. 1 is degenerate in {degenerate}/{fits[task]['seeds']} seeds"
        else:
            overall = statistics.SUPPORTED
        rows.append({"task": task, "gain": interval(gain.difference, signed=True),
                     "first": interval(statistics.summarize(list(first.values())), 1, signed=True),
                     "second": interval(statistics.summarize(list(second.values())), 1, signed=True),
                     "drop": interval(drop.difference, 1, signed=True), "wins": f"{drop.wins}/{len(drop.seeds)}",
                     "verdict": f"**{overall}**"})
    title = (f"Diminishing returns along {short} -> {mid} -> {long} ({shots}-shot), paired over seeds: upstream "
             f"accuracy {interval(statistics.summarize(list(us[0].values())))} -> "
             f"{interval(statistics.summarize(list(us[1].values())))} -> "
             f"{interval(statistics.summarize(list(us[2].values())))}% (mid -> long: "
             f"{interval(upstream.difference, signed=True)} points, {upstream.verdict}). Returns are downstream points "
             "per upstream point")
    return _table(title, [("task", "{task}"), ("downstream gain mid -> long (points)", "{gain}"),
                          ("return short -> mid", "{first}"), ("return mid -> long", "{second}"),
                          ("fall in return", "{drop}"), ("falls in", "{wins}"),
                          ("downstream saturates while upstream improves", "{verdict}")], rows)


def holdout_table(results: Mapping[str, Any], tasks: Mapping[str, tuple[str, int]], shots: int) -> Table:
    """The paper's check of Eq. 1, per seed: leave out the quarter of runs with the best upstream
    accuracy, fit the rest (hull, or every point), and predict the held-out frontier."""
    rows = []
    for task in tasks:
        hull, every, failed = {}, {}, 0
        for seed, (us, ds) in points(results, f"fewshot/{task}/{shots}shot").items():
            try:
                error = holdout_error(us, ds, held_out_fraction=0.25)
            except ValueError:  # fewer than three points left to fit
                failed += 1
                continue
            hull[seed], every[seed] = error.hull, error.all_points
        if not hull:
            rows.append({"task": task, "hull": "n/a", "all": "n/a", "diff": "n/a", "wins": "0/0",
                         "verdict": f"**inconclusive: no seed has 3 points to fit ({failed} tried)**"})
            continue
        comparison = statistics.paired(hull, every, direction="lower")
        rows.append({"task": task, "hull": interval(statistics.summarize(list(hull.values()))),
                     "all": interval(statistics.summarize(list(every.values()))),
                     "diff": interval(comparison.difference, signed=True),
                     "wins": f"{comparison.wins}/{len(comparison.seeds)}", "verdict": f"**{comparison.verdict}**"})
    return _table(f"Held-out check ({shots}-shot, points of accuracy): the hull fit predicts the held-out frontier "
                  "better than an all-points fit (mean absolute error, paired over seeds)", [
                      ("task", "{task}"), ("MAE, hull fit", "{hull}"), ("MAE, all-points fit", "{all}"),
                      ("all-points minus hull", "{diff}"), ("hull better in", "{wins}"),
                      ("verdict", "{verdict}")], rows)


def layers_table(results: Mapping[str, Any], tasks: Mapping[str, tuple[str, int]], shots: int,
                 arms: Sequence[str]) -> Table:
    """Layer 1 minus the last layer, per arm and task, mean [95% CI] over seeds with the verdict on
    'layer 1 beats the last'; and, per far task, whether that gap exceeds the near task's (paired)."""
    near = next((t for t, (distance, _) in tasks.items() if distance == "near"), None)
    labels = {a["name"]: a["label"] for a in results["arms"]}
    rows = []
    for task, (distance, _) in tasks.items():
        row = {"task": task, "distance": distance}
        beyond = []
        for index, arm in enumerate(arms):
            gap = per_seed(results, arm, f"fewshot/{task}/{shots}shot/first_minus_last")
            summary = statistics.summarize(list(gap.values()))
            verdict, _ = statistics.judge(summary)
            row[f"a{index}"] = f"{interval(summary, signed=True)} {verdict}"
            if near is not None and task != near:
                other = per_seed(results, arm, f"fewshot/{near}/{shots}shot/first_minus_last")
                beyond.append(statistics.paired(gap, other).verdict)
        row["far"] = f"{beyond.count(statistics.SUPPORTED)}/{len(beyond)} arms supported" if beyond else "-"
        rows.append(row)
    columns = [("task", "{task}"), ("distance", "{distance}")]
    columns += [(labels[arm], f"{{a{index}}}") for index, arm in enumerate(arms)]
    columns += [(f"gap above {near}'s", "{far}")]
    return _table(f"Layer 1 minus the last layer ({shots}-shot, points), mean [95% CI] over seeds and the verdict on "
                  "'layer 1 beats the last'; last column: in how many arms the gap is larger than on the near task "
                  "(paired over seeds)", columns, rows)


def analysis_tables(results: Mapping[str, Any], *, tasks: Mapping[str, tuple[str, int]], shots: int,
                    chain: Sequence[str], layer_arms: Sequence[str]) -> dict[str, Table]:
    """The study's own tables, in the layout launch/tables.py renders (written beside the study's
    results as a record by `launch.study.write_analysis`)."""
    frontier = frontier_table(results, tasks, shots)
    return {"frontier": frontier,
            "returns": returns_table(results, tasks, shots, chain, frontier),
            "holdout": holdout_table(results, tasks, shots),
            "layers": layers_table(results, tasks, shots, layer_arms)}


def _spread(values: Sequence[float], spec: str) -> str:
    return f"{min(values):{spec}}-{max(values):{spec}}" if values else "n/a"


def _table(title: str, columns: Sequence[tuple[str, str]], rows: Sequence[Mapping[str, Any]]) -> Table:
    from launch.benchmarks._record import table
    return table(list(columns), list(rows), title)


def plots(results: Mapping[str, Any], folder: str, *, tasks: Mapping[str, tuple[str, int]], shots: int) -> None:
    from launch.reproductions import _saturation_plots
    _saturation_plots.draw(results, folder, tasks=tasks, shots=shots)
