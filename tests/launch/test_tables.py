"""Generated tables: blocks between `<!-- results:... -->` markers are rewritten from results/, a
block that differs from its results is reported (and the repository's README and docs have none),
and results from different budgets or machines refuse to share a table."""
from __future__ import annotations

import json
import os

import pytest

from launch import tables


def results(budget: str = "cpu", machine: str = "cpu: Test CPU", gift: float = 0.9, study: str = "demo/moons") -> dict:
    """A results file as launch/study.py writes it, with made-up numbers."""
    def summary(mean):
        return {"n": 5, "mean": mean, "sd": 0.01, "low": mean - 0.0124, "high": mean + 0.0124}

    def arm(name, label, mean, declared=None, budget_value=None):
        return {"name": name, "label": label, "selected": {"AdamW.lr": "1e-3"}, "selection": [],
                "declared": declared or {}, "budget": {"steps": budget_value or 2500, "batch": 64},
                "summary": summary(mean), "select_summary": summary(mean - 0.01), "runs": []}

    return {
        "study": study, "title": "Demo", "notes": ["A note."],
        "budget": {"name": budget, "seeds": [0, 1, 2, 3, 4], "tuning_seeds": [0, 1], "bindings": [],
                   "sweep": {"AdamW.lr": ["1e-3", "3e-3"]}, "note": "demo"},
        "metric": "accuracy", "direction": "higher", "select_split": "target_validation", "report_split": "target",
        "proportion": True, "scale": 100, "unit": "%", "files": [], "bindings": [], "machine": machine,
        "provenance": {"commits": ["0123456789abcdef"], "dirty": False, "versions": [{"torch": "2.13.0", "cuda": None}],
                       "threads": [1], "commands": ["python launch/reproduce.py demo"], "runs": 10, "wall_s": 600.0,
                       "tuning_runs": 4, "tuning_wall_s": 240.0},
        "arms": [arm("st", "self-training", 0.5), arm("gift", "GIFT", gift),
                 arm("source", "source only", 0.45, {"steps": "no adaptation"}, 1000)],
        "claims": [{"name": "c", "text": "GIFT beats self-training", "better": "gift", "worse": "st",
                    "seeds": [0, 1, 2, 3, 4], "differences": [gift - 0.5] * 5,
                    "difference": summary(gift - 0.5), "wins": 5, "verdict": "supported", "reason": "",
                    "resolution": {"examples": 1000, "se": 0.0158, "effect_third": (gift - 0.5) / 3,
                                   "adequate": True}}],
    }


def write(root, key, data):
    path = os.path.join(root, key + ".json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(data, handle)


PAGE = """# A page

Some prose that stays.

<!-- results:demo/moons/cpu table -->
stale text
<!-- /results -->

<!-- results:demo/moons/cpu claims -->
<!-- /results -->

More prose.
"""


def test_markers_are_rewritten_from_results_and_checked(tmp_path):
    root, page = str(tmp_path / "results"), str(tmp_path / "page.md")
    write(root, "demo/moons/cpu", results())
    with open(page, "w") as handle:
        handle.write(PAGE)
    assert tables.stale([page], root) == [f"{os.path.relpath(page, tables.REPO_ROOT)}: results:demo/moons/cpu"] * 2
    assert tables.main(["--check", page, "--results", root]) == 1
    assert tables.main([page, "--results", root]) == 0
    text = open(page).read()
    assert tables.main(["--check", page, "--results", root]) == 0 and tables.stale([page], root) == []
    # Numbers come from the JSON: GIFT's mean and interval x 100, and the paired difference.
    assert "| GIFT | 90.0 [88.8, 91.2] | 5 | 89.0 | lr=1e-3 | 2,500 |" in text
    assert "| source only | 45.0 [43.8, 46.2] | 5 | 44.0 | lr=1e-3 | 1,000 |" in text
    assert "| GIFT beats self-training | +40.0 [+38.8, +41.2] | 5/5 | **supported** |" in text
    assert "1.6 vs 13.3: resolves it (1,000 examples)" in text
    assert text.startswith("# A page\n\nSome prose that stays.\n") and text.endswith("More prose.\n")
    assert "stale text" not in text
    # Rewriting again changes nothing; a hand edit of a number, or new results, make the block stale.
    assert tables.regenerate(text, root) == text
    with open(page, "w") as handle:
        handle.write(text.replace("90.0 [88.8, 91.2]", "90.1 [88.8, 91.2]"))
    assert len(tables.stale([page], root)) == 1
    write(root, "demo/moons/cpu", results(gift=0.91))
    with open(page, "w") as handle:
        handle.write(text)
    assert len(tables.stale([page], root)) == 2


def test_several_studies_share_a_table_only_from_one_budget_and_machine(tmp_path):
    root = str(tmp_path)
    write(root, "demo/moons/cpu", results())
    write(root, "demo/digits/cpu", results(study="demo/digits", gift=0.6))
    write(root, "demo/digits/gpu", results(budget="gpu", study="demo/digits"))
    write(root, "demo/shapes/cpu", results(machine="cuda: NVIDIA H100", study="demo/shapes"))
    many = "<!-- results:demo/moons/cpu,demo/digits/cpu summary -->\n<!-- /results -->"
    text = tables.regenerate(many, root)
    assert "| arm | moons | digits |" in text and "| GIFT | 90.0 [88.8, 91.2] | 60.0 [58.8, 61.2] |" in text
    verdicts = tables.regenerate(many.replace("summary", "verdicts"), root)
    assert "| GIFT beats self-training | +40.0 [+38.8, +41.2], 5/5: **supported** | +10.0 [+8.8, +11.2]" in verdicts
    for mixed in ("demo/moons/cpu,demo/digits/gpu", "demo/moons/cpu,demo/shapes/cpu"):
        with pytest.raises(tables.TableError, match="cannot share a table"):
            tables.regenerate(f"<!-- results:{mixed} summary -->\n<!-- /results -->", root)
    with pytest.raises(tables.TableError, match="does not exist"):
        tables.regenerate("<!-- results:demo/none/cpu -->\n<!-- /results -->", root)
    with pytest.raises(tables.TableError, match="unknown view"):
        tables.regenerate("<!-- results:demo/moons/cpu pie -->\n<!-- /results -->", root)
    with pytest.raises(tables.TableError, match="shows one study"):
        tables.regenerate("<!-- results:demo/moons/cpu,demo/digits/cpu table -->\n<!-- /results -->", root)


def test_the_repository_pages_match_their_results():
    """Every generated block in README.md and docs/*.md is what results/ generates now."""
    stale = tables.stale(tables.default_pages())
    assert not stale, f"run `python launch/tables.py`: {stale}"


def test_a_marker_inside_a_code_block_is_an_example(tmp_path):
    text = "```\n<!-- results:demo/none/cpu -->\nanything\n<!-- /results -->\n```\n"
    assert tables.regenerate(text, str(tmp_path)) == text and tables.blocks(text) == []
