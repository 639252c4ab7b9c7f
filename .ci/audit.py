"""Known vulnerabilities in the installed dependencies: pip-audit, and PyPI's word where pip-audit could not ask.

pip-audit asks PyPI's JSON API about each installed release (`/pypi/<name>/<version>/json`). Where that answer cannot
be had (some networks reach only the per-project document), this asks the per-project one (`/pypi/<name>/json`),
which lists the known vulnerabilities of the newest release: exact when that is the release installed. A dependency
neither can vouch for is named, not failed. Exit 1 on any known vulnerability.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

PIP_AUDIT = Path(sys.executable).with_name("pip-audit")


def newest(name: str) -> dict:
    """PyPI's document about a project: its newest release and that release's known vulnerabilities."""
    with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=30) as answer:
        return json.load(answer)


def main() -> int:
    done = subprocess.run([str(PIP_AUDIT), "--skip-editable", "--progress-spinner", "off", "--format", "json"],
                          capture_output=True, text=True)
    if not done.stdout.strip():
        print(done.stderr, file=sys.stderr)
        return done.returncode or 1
    found, audited, unaudited = [], 0, []
    for dependency in json.loads(done.stdout)["dependencies"]:
        name, reason = dependency["name"], dependency.get("skip_reason", "")
        if not reason:
            audited += 1
            found += [(name, dependency["version"], v["id"], v.get("fix_versions", [])) for v in dependency["vulns"]]
            continue
        if "not found on PyPI" not in reason:
            continue  # this project itself (editable), or something not from PyPI
        version = reason.rsplit("(", 1)[-1].rstrip(")")
        try:
            project = newest(name)
        except OSError as err:
            unaudited.append(f"{name} {version} ({err})")
            continue
        if project["info"]["version"] != version:
            unaudited.append(f"{name} {version} (the newest is {project['info']['version']})")
            continue
        audited += 1
        found += [(name, version, v["id"], v.get("fixed_in", [])) for v in project.get("vulnerabilities", [])
                  if not v.get("withdrawn")]
    for name, version, vulnerability, fixed in found:
        print(f"pip-audit: {name} {version} has {vulnerability} (fixed in {', '.join(fixed) or 'no release yet'})")
    if unaudited:
        print(f"pip-audit: could not audit {len(unaudited)}: {'; '.join(unaudited)}")
    print(f"pip-audit: {audited} dependencies audited, {len(found)} known vulnerabilities")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
