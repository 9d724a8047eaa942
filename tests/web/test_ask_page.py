"""The ask page in a real browser: the answer streamed into the page (POST /ask/stream, the API's SSE
events), its citations opening the cited passage, the three outcomes shown as what they are, keyboard-only
use, the same answer without JavaScript, and an employee who never sees confidential or restricted text."""

from __future__ import annotations

import html
import re
import time

import httpx
import pytest

from api.followup import standalone_question
from api.web.session import COOKIE, CSRF_FIELD, CSRF_HEADER
from retrieval.serving import ServingContext
from retrieval.settings import RetrievalSettings
from tests.web.conftest import CONFIDENTIAL, RESTRICTED, Web, screenshot, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ANSWERED = "How many days do customers have to request a refund?"
# Chosen by asking the running app (as ana) several questions written beforehand for each outcome; each
# test first checks with POST /v1/ask that the pipeline still decides this outcome.
ABSTAINED = "What is the capital of Australia?"
POSSIBLY_RELEVANT = "How long does the quarterly revenue close take for the Brazil subsidiary?"
FORBIDDEN = (RESTRICTED, *CONFIDENTIAL)
# What an employee might ask that the confidential and restricted products answer.
EMPLOYEE_QUESTIONS = (
    "How many days do customers have to request a refund?",
    "What happened in the support ticket about the dented kettle refund?",
    "What are the salary bands for a senior analyst?",
    "How is net revenue reported in the board pack?",
)


def api_answer(web: Web, principal: str, question: str, **body) -> dict:
    r = httpx.post(f"{web.url}/v1/ask", json={"question": question, **body},
                   headers={"Authorization": f"Bearer {web.keys[principal]}"}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def ask(page, question: str, *, submit: str = "click") -> None:
    """Ask on the current ask page and wait until the streamed answer is complete."""
    page.get_by_label("Question").fill(question)
    if submit == "enter":
        page.get_by_label("Question").press("Enter")
    else:
        page.get_by_role("button", name="Ask", exact=True).click()
    page.locator("#ask-answer[data-ask-state=done]").wait_for()


def shown_answer(page) -> dict:
    """What the page shows of an answer, in a form two renderings can be compared by."""
    return {
        "outcome": page.locator("#ask-outcome").get_attribute("data-outcome"),
        "sentences": page.locator(".ask-sentence").all_inner_texts(),
        "citations": [a.get_attribute("href") for a in page.locator(".ask-cite-link").all()],
        "products": page.locator("#ask-products-cited > li").all_inner_texts(),
        "short": page.locator("#ask-short mark").all_inner_texts(),
    }


def test_a_question_streams_a_cited_answer_and_a_citation_opens_its_passage(page, web: Web):
    expected = api_answer(web, "ana", ANSWERED)
    assert expected["answer"]["outcome"] == "answered", "pick another ANSWERED question"
    sign_in(page, web, "ana")
    page.goto("/")
    assert page.get_by_label("Question").get_attribute("maxlength") == "2000"
    # A marker that a page load would wipe, and the in-page clock from submit to the first sentence.
    page.evaluate("""() => {
        window.__sameDocument = true;
        window.__t = {};
        document.getElementById('ask-form').addEventListener('submit',
            () => { window.__t.submit = performance.now(); }, {capture: true});
        new MutationObserver((_, observer) => {
            if (document.querySelector('#ask-text .ask-sentence')) {
                window.__t.first = performance.now();
                observer.disconnect();
            }
        }).observe(document.getElementById('ask-answer'), {childList: true, subtree: true});
    }""")
    streamed: list[str] = []
    page.on("response", lambda r: streamed.append(r.url) if r.request.method == "POST" else None)
    started = time.monotonic()
    ask(page, ANSWERED)
    wall_ms = (time.monotonic() - started) * 1000

    # It arrived through the stream, into this document: no navigation, one POST to /ask/stream.
    assert page.evaluate("window.__sameDocument") is True
    assert page.url == f"{web.url}/"
    assert streamed == [f"{web.url}/ask/stream"]
    timing = page.evaluate("window.__t")
    first_sentence_ms = round(timing["first"] - timing["submit"], 1)
    web.measured["ask_submit_to_first_sentence_ms"] = first_sentence_ms
    print(f"\nask page: submit → first answer sentence on screen {first_sentence_ms} ms "
          f"(whole answer, Python clock: {wall_ms:.0f} ms)")

    shown = shown_answer(page)
    answer = expected["answer"]
    assert shown["outcome"] == "answered"
    assert "answered" in page.locator("#ask-status").inner_text()
    assert [s.strip() for s in shown["sentences"]] == [
        s["text"] + "".join(f"[{m}]" for m in s["markers"]) for s in answer["sentences"]]
    assert len(shown["citations"]) == len(answer["citations"]) >= 1
    if answer["short"]:
        assert shown["short"] == [answer["short"]["text"]]
    # Product badges: classification and freshness, with the owner.
    for product, item in zip(expected["products"], page.locator("#ask-products-cited > li").all(), strict=True):
        assert item.locator(f".badge.{product['classification']}").count() == 1
        assert item.locator(f".badge.{product['freshness']['status']}").count() == 1
        assert product["owner"] in item.inner_text()
    request_id = page.locator("#ask-provenance code").first.inner_text()
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert page.locator("#ask-provenance-link").get_attribute("href") == f"/provenance/{request_id}"
    assert page.evaluate("document.activeElement.id") == "ask-answer-heading"
    # The follow-up box now carries this question, for "and …?" follow-ups.
    assert page.locator("#ask-previous").is_checked()
    screenshot(page, "ask-answer")

    # The first citation opens its document with exactly the cited passage highlighted and in view.
    first = page.locator("#ask-citations > li").first
    cited_text = first.locator(".ask-passage").text_content()
    assert cited_text == answer["citations"][0]["text"]
    first.locator(".ask-cite-link").click()
    page.wait_for_load_state()
    assert "/documents/" in page.url and page.url.endswith("#cited")
    mark = page.locator("mark#cited")
    assert mark.text_content() == cited_text
    assert mark.is_visible()
    box, viewport = mark.bounding_box(), page.viewport_size
    assert box is not None and 0 <= box["y"] < viewport["height"]  # scrolled to
    screenshot(page, "document-citation")


def test_an_abstention_and_a_possibly_relevant_result_are_shown_as_such(page, web: Web):
    abstained = api_answer(web, "ana", ABSTAINED)["answer"]
    possibly = api_answer(web, "ana", POSSIBLY_RELEVANT)["answer"]
    assert abstained["outcome"] == "abstained", "pick another ABSTAINED question"
    assert possibly["outcome"] == "possibly_relevant", "pick another POSSIBLY_RELEVANT question"
    sign_in(page, web, "ana")
    page.goto("/")

    ask(page, ABSTAINED, submit="enter")
    outcome = page.locator("#ask-outcome")
    assert outcome.get_attribute("data-outcome") == "abstained"
    assert "Not found in the products you can read" in outcome.inner_text()
    assert page.locator("#ask-text").count() == 0 and page.locator("#ask-citations").count() == 0
    closest = outcome.locator(".ask-closest li").all_inner_texts()
    assert len(closest) == len(abstained["closest_products"]) >= 1
    # The follow-ups ask the same question in each of the closest products.
    assert page.locator("#ask-followups button").first.inner_text().startswith("Ask in ")
    screenshot(page, "ask-abstained")

    # Ask again in the first closest product: the follow-up fills the form and streams a new answer.
    page.locator("#ask-followups button").first.click()
    page.locator("#ask-answer[data-ask-state=done]").wait_for()
    assert page.locator("#ask-products").input_value() == abstained["closest_products"][0]
    assert page.get_by_label("Question").input_value() == ABSTAINED

    page.locator("#ask-products").select_option("")
    page.locator("#ask-previous").uncheck()
    ask(page, POSSIBLY_RELEVANT)
    outcome = page.locator("#ask-outcome")
    assert outcome.get_attribute("data-outcome") == "possibly_relevant"
    assert "No confirmed answer" in outcome.inner_text() and "not an answer" in outcome.inner_text()
    assert page.locator("#ask-text.ask-quoted .ask-sentence").count() == len(possibly["sentences"]) >= 1
    assert page.locator("#ask-citations > li").count() == len(possibly["citations"])
    assert "no confirmed answer" in page.locator("#ask-status").inner_text()


def test_the_ask_page_works_with_the_keyboard_alone(page, web: Web):
    sign_in(page, web, "ana")
    page.goto("/")

    def tab_to(predicate: str, limit: int = 60) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate(f"(() => {{ const e = document.activeElement; return Boolean({predicate}); }})()"):
                return
        pytest.fail(f"Tab never reached {predicate}")

    tab_to("e.id === 'ask-question'")
    page.keyboard.type(ANSWERED)
    tab_to("e.id === 'ask-submit'", limit=5)
    page.keyboard.press("Space")
    page.locator("#ask-answer[data-ask-state=done]").wait_for()
    tab_to("e.classList.contains('ask-cite-link')")
    tab_to("e.id === 'ask-provenance-link'")
    target = page.evaluate("document.activeElement.getAttribute('href')")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**{target}")

    # Enter in the question box asks too (Shift+Enter would start a new line).
    page.goto("/")
    tab_to("e.id === 'ask-question'")
    page.keyboard.type(ABSTAINED)
    page.keyboard.press("Enter")
    page.locator("#ask-answer[data-ask-state=done]").wait_for()
    assert page.locator("#ask-outcome").get_attribute("data-outcome") == "abstained"


def test_a_follow_up_is_read_against_the_previous_question(page, web: Web):
    """As the chat endpoint reads follow-ups (api/followup.py): the page shows the question it answered."""
    first, follow_up = "How is churn rate defined?", "Who owns it?"
    expected = standalone_question([first, follow_up])
    assert expected.rewritten
    sign_in(page, web, "ana")
    page.goto("/")
    ask(page, first)
    assert page.locator("#ask-previous").is_checked()
    ask(page, follow_up)
    assert page.locator("#ask-asked").inner_text() == f"Answered as: “{expected.question}”"
    assert page.locator("#ask-previous-text").inner_text() == expected.question
    # Unticked, the same words are asked as they are.
    page.locator("#ask-previous").uncheck()
    ask(page, follow_up)
    assert page.locator("#ask-asked").count() == 0


def test_without_javascript_the_form_renders_the_same_answer(browser, page, web: Web):
    sign_in(page, web, "ana")
    page.goto("/")
    ask(page, ANSWERED)
    streamed = shown_answer(page)

    context = browser.new_context(base_url=web.url, java_script_enabled=False)
    try:
        plain = context.new_page()
        sign_in(plain, web, "ana")
        plain.goto("/")
        plain.get_by_label("Question").fill(ANSWERED)
        plain.get_by_role("button", name="Ask", exact=True).click()
        plain.wait_for_load_state()
        assert plain.url == f"{web.url}/ask"
        assert shown_answer(plain) == streamed
        assert plain.locator("#ask-provenance-link").count() == 1
    finally:
        context.close()

    # The same form posted by a client that is not a browser: the session's CSRF token is required.
    with httpx.Client(base_url=web.url, timeout=60) as client:
        client.post("/signin", data={"api_key": web.keys["ana"]})
        assert client.cookies.get(COOKIE)
        token = re.search(rf'name="{CSRF_FIELD}" value="([^"]+)"', client.get("/").text).group(1)
        refused = client.post("/ask", data={"question": ANSWERED})
        assert refused.status_code == 403
        r = client.post("/ask", data={"question": ANSWERED, CSRF_FIELD: token})
        assert r.status_code == 200
        sentences = [html.unescape(re.sub(r"<[^>]+>", "", s)).strip()
                     for s in re.findall(r'<span class="ask-sentence">(.*?)</span>', r.text, re.DOTALL)]
        assert sentences == [s.strip() for s in streamed["sentences"]]
        assert "<script>" not in r.text and " style=" not in r.text


def test_the_stream_refuses_what_the_api_refuses_with_the_api_errors(page, web: Web):
    sign_in(page, web, "ana")
    page.goto("/")
    # Over the service's limit (the box stops typing at maxlength; a script could still send it).
    page.evaluate("document.getElementById('ask-question').removeAttribute('maxlength')")
    page.get_by_label("Question").fill("x" * 2001)
    page.get_by_role("button", name="Ask", exact=True).click()
    alert = page.get_by_role("alert")
    alert.locator("p").wait_for()
    assert "the limit is 2000" in alert.inner_text()
    assert page.get_by_role("button", name="Ask", exact=True).is_enabled()

    with httpx.Client(base_url=web.url, timeout=60) as client:
        client.post("/signin", data={"api_key": web.keys["ana"]})
        token = re.search(rf'name="{CSRF_FIELD}" value="([^"]+)"', client.get("/").text).group(1)
        r = client.post("/ask/stream", data={"question": ANSWERED})
        assert r.status_code == 403 and r.json()["error"]["type"] == "csrf_rejected"
        r = client.post("/ask/stream", json={"question": ANSWERED, "products": [RESTRICTED]},
                        headers={CSRF_HEADER: token})
        missing = client.post("/ask/stream", json={"question": ANSWERED, "products": ["people.no-such-thing"]},
                              headers={CSRF_HEADER: token})
        assert r.status_code == missing.status_code == 404
        assert r.json()["error"]["message"] == missing.json()["error"]["message"].replace(
            "people.no-such-thing", RESTRICTED)
        api = httpx.post(f"{web.url}/v1/ask", json={"question": ANSWERED, "stream": True},
                         headers={"Authorization": f"Bearer {web.keys['ana']}"}, timeout=60)
        mine = client.post("/ask/stream", json={"question": ANSWERED}, headers={CSRF_HEADER: token})
        assert mine.headers["content-type"] == api.headers["content-type"]
        events = re.compile(r"^event: (\w+)", re.MULTILINE)
        assert events.findall(api.text) == [
            "retrieval", *["sentence"] * len(events.findall(api.text)[1:-2]), "citations", "done"]
        # The page's stream is the API's, plus the suggested follow-ups it decides after the citations.
        theirs = events.findall(api.text)
        assert events.findall(mine.text) == [*theirs[:-1], "followups", "done"]


def forbidden_texts(web: Web) -> list[str]:
    """Ids, names, documents and passages of the confidential and restricted products that nothing an
    employee may read also contains. (Their ids and names are catalog facts an employee may discover, but
    on the catalog pages only: tests/web/test_page_access.py; never on the ask page.)"""
    context = ServingContext(RetrievalSettings(data_dir=web.data_dir))
    release = context.releases.current()
    assert release is not None
    catalog = web.app.state.service.context.catalog

    def passages(pids):
        return [c for pid in pids for c in context.versions.read_chunks(release.products[pid].chunk_version)]

    allowed = {pid for pid in release.products if pid not in FORBIDDEN}
    allowed_text = "\n".join(" ".join(c.text.split()) for c in passages(allowed))
    allowed_docs = {c.document for c in passages(allowed)}
    out = [*FORBIDDEN, *(catalog.products[pid].title for pid in FORBIDDEN)]
    for chunk in passages(FORBIDDEN):
        if chunk.document not in allowed_docs:
            out.append(chunk.document)
        words = " ".join(chunk.text.split())[:60]
        if len(words) >= 40 and words not in allowed_text:
            out.append(words)
    return out


def test_an_employee_never_sees_confidential_or_restricted_content(page, web: Web):
    forbidden = forbidden_texts(web)
    sign_in(page, web, "emp")
    page.goto("/")
    options = page.locator("#ask-products option").all()
    assert not {o.get_attribute("value") for o in options} & set(FORBIDDEN)
    for question in EMPLOYEE_QUESTIONS:
        ask(page, question)
        for content in (page.content(), " ".join(page.locator("body").inner_text().split())):
            leaked = [text for text in forbidden if text in content]
            assert not leaked, (question, leaked[:5])
        page.locator("#ask-previous").uncheck()

    # The document view of those products is the 404 of a product that does not exist, as in the API; the
    # API's catalog shows the employee their catalog facts alone (they are discoverable, not readable).
    auth = {"Authorization": f"Bearer {web.keys['emp']}"}
    with httpx.Client(base_url=web.url, timeout=60) as client:
        client.post("/signin", data={"api_key": web.keys["emp"]})
        missing = client.get("/documents/people.no-such-product/_catalog")
        missing_message = re.search(r'role="alert">(.*?)</p>', missing.text, re.DOTALL).group(1)
        api_missing = httpx.get(f"{web.url}/v1/catalog/people.no-such-product", headers=auth).json()
        for pid in FORBIDDEN:
            r = client.get(f"/documents/{pid}/_catalog?start=0&end=10")
            assert r.status_code == missing.status_code == 404
            message = re.search(r'role="alert">(.*?)</p>', r.text, re.DOTALL).group(1)
            assert message == missing_message.replace("people.no-such-product", pid)
            assert html.unescape(message) == api_missing["error"]["message"].replace("people.no-such-product", pid)
            assert not [text for text in forbidden if text in r.text and text != pid]
            facts = httpx.get(f"{web.url}/v1/catalog/{pid}", headers=auth)
            assert facts.status_code == 200 and facts.json()["access"] == "discover"
            assert not {"tags", "documents", "document_ids", "versions", "usage"} & set(facts.json())


def test_signed_out_visitors_ask_the_public_products_only(page, web: Web):
    page.goto("/")
    assert "public products only" in page.locator("#ask-anonymous").inner_text()
    assert page.locator("#ask-anonymous a").get_attribute("href").startswith("/signin")
    readable = [o.get_attribute("value") for o in page.locator("#ask-products option").all()]
    assert readable == ["", "platform.mesh-handbook"]
    ask(page, "How do I publish a knowledge product?")
    cited = {href.split("/")[2] for href in shown_answer(page)["citations"]}
    assert cited <= {"platform.mesh-handbook"}
    assert page.locator("#ask-provenance-link").count() == 0  # provenance records need a key


def test_ask_page_weight(page, web: Web):
    """Measured, not asserted: every byte the browser receives to show the ask page."""
    sign_in(page, web, "ana")
    responses = []
    page.on("response", lambda response: responses.append(response))
    page.goto("/")
    page.wait_for_load_state("networkidle")
    sizes = {}
    for response in responses:
        try:
            sizes[response.url] = len(response.body())
        except Exception:  # noqa: BLE001 — a redirect has no body
            sizes[response.url] = 0
    total = sum(sizes.values())
    web.measured["ask_page_bytes"] = total
    print(f"\nask page: {total} bytes in {len(sizes)} responses: "
          + ", ".join(f"{url.removeprefix(web.url)} {size}" for url, size in sizes.items()))
    assert f"{web.url}/assets/ask.js" in sizes  # the one script, from this origin
