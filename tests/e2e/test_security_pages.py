"""The Content-Security-Policy in a real browser: the pages that run script (the API documentation, the dashboard's
and the report's print buttons) work under it, and nothing on them is blocked."""

from __future__ import annotations

import requests
from playwright.sync_api import expect

from tests.e2e.conftest import sign_in


def blocked_by_policy(tab) -> list[str]:
    """Collect what the browser reports the Content-Security-Policy blocked on this tab."""
    blocked: list[str] = []
    tab.on("console", lambda message: blocked.append(message.text)
           if "Content Security Policy" in message.text else None)
    return blocked


def test_the_api_documentation_runs_under_the_policy(page, site):
    blocked = blocked_by_policy(page)
    page.goto("/docs")
    expect(page.locator(".opblock-summary-path", has_text="/requests").first).to_be_visible()
    assert blocked == []
    answer = requests.get(f"{site.url}/docs", timeout=10)
    assert "script-src 'self'" in answer.headers["Content-Security-Policy"]


def test_the_dashboard_and_report_print_buttons_work_with_no_inline_script(page, site):
    page.add_init_script("window.printed = 0; window.print = () => { window.printed += 1; };")
    blocked = blocked_by_policy(page)
    sign_in(page, "manager")
    page.goto("/dashboard")
    page.get_by_role("link", name="Print a report").click()
    page.wait_for_function("window.printed === 1")
    page.goto("/report?period=month")
    page.get_by_role("button", name="Print or save as PDF").click()
    page.wait_for_function("window.printed === 1")
    assert blocked == []
