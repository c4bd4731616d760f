"""Schemathesis (`--checks all`) against a live server, shared by the SQLite and PostgreSQL fuzz tests.

The CLI runs in a child process against the live server's OpenAPI schema, authenticated with the program
owner's API token, for a bounded time. `run_schemathesis` returns the failures of its JUnit report, grouped by
check; callers assert there is no server error and no other check failure they have not accepted.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Operations that can revoke the fuzzer's own key (or deactivate its user): the rest of the run would test
# nothing but 401s. Tested by the accounts tests instead.
REVOKES_OWN_KEY = r"/tokens|/keys/|/deactivate"


def run_schemathesis(base_url: str, token: str, report_dir: Path, *, max_time: int,
                     seed: int = 0) -> dict[str, list[str]]:
    """The failures of one bounded run by check name; the CLI's output and a count per check are printed (shown
    by pytest on failure, and what docs/operations.md records for the long runs)."""
    junit = report_dir / "junit.xml"
    command = [str(Path(sys.executable).parent / "schemathesis"), "run", f"{base_url}/api/schema/",
               "--url", base_url, "--checks", "all", "--max-time", str(max_time), "--seed", str(seed),
               "--workers", "1", "--mode", "all", "--phases", "examples,coverage,fuzzing,stateful",
               "--request-timeout", "30", "--suppress-health-check", "all", "--no-color",
               "-H", f"Authorization: Token {token}", "--exclude-path-regex", REVOKES_OWN_KEY,
               "--report", "junit", "--report-junit-path", str(junit)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=max_time * 4 + 120,
                            env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"})
    output = result.stdout + result.stderr
    assert junit.exists(), output[-5000:]
    failures = failures_by_check(junit)
    print(output[-6000:])
    for check, cases in sorted(failures.items()):
        print(f"{check}: {len(cases)} failing operation(s), e.g.\n  " + "\n  ".join(cases[:2]))
    return failures


def failures_by_check(junit: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        for failure in [*case.iter("failure"), *case.iter("error")]:
            text = (failure.get("message") or "") + "\n" + (failure.text or "")
            found.setdefault(_check_of(text), []).append(f"{case.get('name')}: {text.strip()[:600]}")
    return found


def _check_of(text: str) -> str:
    codes = re.findall(r"\b(ST\d{3})\b", text)
    if "Server error" in text or {"ST101", "ST102"} & set(codes):  # schemathesis' ServerError codes
        return "not_a_server_error"
    return codes[0] if codes else (text.strip().splitlines()[0][:80] if text.strip() else "unknown")
