"""The rule index (engine/rules.py) names, for every rule of DOMAIN.md, where it is enforced;
every rule it names has a test named after it."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from engine.rules import PLANNED, RULES

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = ROOT.parent / "shared" / "DOMAIN.md"
RULE = re.compile(r"^- \*\*([A-Z]+[0-9]+)\*\*", re.M)


def _resolve(path: str) -> object:
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(path)


def test_every_rule_of_the_domain_is_in_the_index_or_planned():
    rules = RULE.findall(DOMAIN.read_text(encoding="utf-8"))
    assert len(rules) > 40, f"{DOMAIN}: rules not found"
    missing = [r for r in rules if r not in RULES and r not in PLANNED]
    assert missing == []
    assert set(RULES) | set(PLANNED) <= set(rules)  # nothing indexed that DOMAIN.md does not have
    assert not set(RULES) & set(PLANNED)


def test_every_place_in_the_index_exists():
    for rule, places in RULES.items():
        for place in places:
            assert callable(_resolve(place)), f"{rule}: {place}"


def test_every_indexed_rule_has_a_test_named_after_it():
    names = " ".join(re.findall(r"def (test_\w+)", "\n".join(
        p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("test_*.py")))).lower()
    unnamed = [r for r in RULES if not re.search(rf"(?<![a-z0-9]){r.lower()}(?![0-9])", names)]
    assert unnamed == []
