"""Browser test of the discussion: a reviewer comments on a predictor's instruction and mentions the author; the
author sees the bell's count, opens the notification, lands on the thread and replies.

The fixtures come from tests/e2e/portal.py (world: v1 released on the fake LM).
"""

from __future__ import annotations

from governance.actions import create_version, initial_payload, open_change_request
from governance.actions.notifications import unread_count
from tests.e2e.portal import (  # noqa: F401 - fixtures
    Portal,
    browser,
    committed,
    expect_text,
    lm_server,
    portal_settings,
    sync_api,
    world,
)
from tests.e2e.test_compare_flow import fits_and_passes_axe


def test_reviewer_comments_on_an_instruction_and_the_author_is_notified(world, live_server, browser):  # noqa: F811
    program, users = world["program"], world["users"]
    payload = initial_payload(program)
    payload["program"]["predictors"][0]["signature"]["instructions"] = "Route the ticket."
    v2 = create_version(program, actor=users["author"], payload=payload, note="Shorter instruction.")
    cr = open_change_request(v2, actor=users["author"], title="Shorter instruction")
    earlier = unread_count(users["author"])  # v1's approval and release told the author already

    reviewer = Portal(browser, live_server.url, "reviewer1")
    page = reviewer.page
    page.goto(f"/change-requests/{cr.pk}/")
    page.get_by_role("link", name="Comment on the instruction of classify").click()
    sync_api.expect(page.get_by_label("About")).to_have_value("instruction:classify")
    page.get_by_label("Comment", exact=True).fill("@author the label list is gone: on purpose?")
    page.get_by_role("button", name="Post comment").click()
    thread = page.locator("article.comment-thread").first
    sync_api.expect(thread).to_contain_text("on instruction of classify")
    sync_api.expect(thread.locator("strong.mention")).to_have_text("@author")
    sync_api.expect(page.get_by_role("link", name="1 comment on the instruction of classify")).to_be_visible()
    reviewer.shot("discussion-comment")
    reviewer.close()

    author = Portal(browser, live_server.url, "author")
    page = author.page
    sync_api.expect(page.locator("#bell-count")).to_have_text(str(earlier + 1))
    page.locator("#bell").click()
    expect_text(page, "Ravi Patel mentioned you on the instruction of classify")
    assert fits_and_passes_axe(page, 1366) == []
    author.shot("notifications")
    page.locator("#notification-list li", has_text="mentioned you").get_by_role("button", name="Open").click()
    page.wait_for_url(f"**/change-requests/{cr.pk}/#comment-*")
    thread = page.locator("article.comment-thread").first
    sync_api.expect(thread).to_contain_text("the label list is gone: on purpose?")
    sync_api.expect(page.locator("#bell-count")).to_have_text(str(earlier))
    thread.locator("summary", has_text="Reply").click()
    thread.get_by_label("Reply").fill("Yes: the shorter one scores better.")
    thread.get_by_role("button", name="Post reply").click()
    sync_api.expect(page.locator("article.comment-thread").first).to_contain_text("the shorter one scores better")
    assert fits_and_passes_axe(page, 1366) == []
    author.shot("discussion-thread")
    # A phone in dark mode: the discussion and the notifications fit 390 px and stay clean.
    page.emulate_media(color_scheme="dark")
    page.set_viewport_size({"width": 390, "height": 844})
    for url in (f"/change-requests/{cr.pk}/", "/notifications/", "/notifications/settings/"):
        page.goto(url)
        assert fits_and_passes_axe(page, 390) == [], url
    author.shot("notifications-390-dark")
    author.close()
