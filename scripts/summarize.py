#!/usr/bin/python3
"""Count every test a scripts/test.sh run executed and print the closing line.

Sources, all in the results directory given as the only argument:
  checks.txt          one "PASS name" / "FAIL name" line per build or lint check
  unit*.json          meson's testlog.json; every TAP "ok"/"not ok" line counts,
                      and a test program that crashed without TAP output counts
                      as one failure
  *.xml               pytest junit files (tests, failures, errors, skipped)
"""
import json
import pathlib
import re
import sys
import xml.etree.ElementTree as ET

TAP = re.compile(r"^(not ok|ok)\b(.*)$")


def count_checks(path, totals, failures):
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        verdict, _, name = line.partition(" ")
        if verdict == "PASS":
            totals["passed"] += 1
        else:
            totals["failed"] += 1
            failures.append(f"check {name}")


def count_meson(path, totals, failures):
    for raw in path.read_text().splitlines():
        if not raw.strip():
            continue
        entry = json.loads(raw)
        points = 0
        for line in entry.get("stdout", "").splitlines():
            m = TAP.match(line)
            if not m:
                continue
            points += 1
            skipped = "# SKIP" in m.group(2).upper()
            if m.group(1) == "ok":
                totals["skipped" if skipped else "passed"] += 1
            else:
                totals["failed"] += 1
                failures.append(f"{path.stem}:{entry['name']}{m.group(2)}")
        if entry.get("result") not in ("OK", "SKIP", "EXPECTEDFAIL") and points == 0:
            totals["failed"] += 1
            failures.append(f"{path.stem}:{entry['name']} ({entry.get('result')})")
        elif entry.get("result") not in ("OK", "SKIP", "EXPECTEDFAIL"):
            # TAP points all passed but the program failed (crash, sanitizer, plan).
            if not any(f.startswith(f"{path.stem}:{entry['name']}") for f in failures):
                totals["failed"] += 1
                failures.append(f"{path.stem}:{entry['name']} ({entry.get('result')})")


def count_junit(path, totals, failures):
    root = ET.parse(path).getroot()
    for case in root.iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            totals["failed"] += 1
            failures.append(name)
        elif case.find("skipped") is not None:
            totals["skipped"] += 1
        else:
            totals["passed"] += 1


def main():
    out = pathlib.Path(sys.argv[1])
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    failures = []
    count_checks(out / "checks.txt", totals, failures)
    for path in sorted(out.glob("unit*.json")):
        count_meson(path, totals, failures)
    junits = sorted(out.glob("*.xml"))
    if not junits:
        totals["failed"] += 1
        failures.append("integration tests produced no results")
    for path in junits:
        count_junit(path, totals, failures)
    for f in failures:
        print(f"FAILED: {f}")
    line = f"{totals['passed']} passed, {totals['failed']} failed"
    if totals["skipped"]:
        line += f", {totals['skipped']} skipped"
    print(line)
    return 1 if totals["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
