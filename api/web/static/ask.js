// The ask page's one script: streams the answer into the page instead of loading a new one.
//
// Progressive enhancement: without it, the form posts to /ask and the server renders the same answer
// (templates/ask_answer.html; the elements built here carry the same ids and classes, so change both
// together). It posts to /ask/stream, which sends POST /v1/ask's Server-Sent Events (retrieval,
// sentence…, citations, done; or error), and renders each as it arrives. Server data only ever enters
// the page as text (textContent, attributes), never as HTML.
"use strict";

(() => {
  const form = document.getElementById("ask-form");
  if (!form || !window.fetch || !window.ReadableStream || !window.TextDecoder || !form.requestSubmit) {
    return; // the form posts as it is
  }
  const question = document.getElementById("ask-question");
  const products = document.getElementById("ask-products");
  const submit = document.getElementById("ask-submit");
  const alertBox = document.getElementById("ask-error");
  const region = document.getElementById("ask-answer");
  const previousRow = document.getElementById("ask-previous-row");
  const previous = document.getElementById("ask-previous");
  const previousText = document.getElementById("ask-previous-text");
  const csrfField = form.dataset.csrfField;
  const csrfInput = csrfField ? form.querySelector(`input[name="${csrfField}"]`) : null;
  const signedIn = Boolean(csrfInput);
  const OUTCOME_STATUS = {
    answered: "answered",
    possibly_relevant: "no confirmed answer",
    abstained: "not found",
  };
  let busy = false;

  document.getElementById("ask-enter-hint").hidden = false;
  question.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ask();
  });
  // Follow-up buttons (server-rendered or built below) fill the form and ask through the stream.
  region.addEventListener("submit", (event) => {
    const followUp = event.target.closest("form.ask-followup");
    if (!followUp) return;
    event.preventDefault();
    question.value = followUp.elements.question.value;
    products.value = followUp.elements.products.value;
    previous.checked = false;
    ask();
  });

  // ------------------------------------------------------------------------------------- asking
  async function ask() {
    if (busy) return;
    const sent = question.value;
    const body = new URLSearchParams(new FormData(form));
    const headers = { Accept: "text/event-stream" };
    if (csrfInput) {
      body.delete(csrfField);
      headers[form.dataset.csrfHeader] = csrfInput.value;
    }
    setBusy(true);
    clearError();
    const view = new AnswerView(sent);
    try {
      const response = await fetch(form.dataset.stream, {
        method: "POST", body, headers, credentials: "same-origin",
      });
      const type = response.headers.get("content-type") || "";
      if (!response.ok || !type.startsWith("text/event-stream")) {
        view.failed();
        showError(await errorMessage(response));
        return;
      }
      const standalone = response.headers.get("X-Standalone-Question");
      view.asked(standalone ? decodeURIComponent(standalone) : sent, Boolean(standalone));
      for await (const { event, data } of serverEvents(response.body)) {
        view.on(event, JSON.parse(data));
      }
      if (!view.ended) {
        view.failed();
        showError("The answer stopped before it was complete. Ask again.");
      }
    } catch (err) {
      view.failed();
      showError(`The answer could not be loaded (${err.message}). Check the connection and ask again.`);
    } finally {
      setBusy(false);
    }
  }

  function setBusy(on) {
    busy = on;
    submit.disabled = on;
    submit.textContent = on ? "Asking…" : "Ask";
    if (on) region.setAttribute("aria-busy", "true");
    else region.removeAttribute("aria-busy");
    if (on) region.dataset.askState = "asking";
  }

  async function errorMessage(response) {
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) return body.error.message;
    } catch (_) {
      // not the API's JSON error: fall through to the status
    }
    return `The server answered ${response.status} ${response.statusText}. Reload the page and try again.`;
  }

  function showError(message) {
    alertBox.replaceChildren(el("p", { class: "error" }, message));
  }

  function clearError() {
    alertBox.replaceChildren();
  }

  // Server-Sent Events from a fetch body: blocks separated by a blank line, `event:` and `data:` fields.
  async function* serverEvents(body) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const parsed = parseBlock(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
        if (parsed) yield parsed;
      }
      if (done) return;
    }
  }

  function parseBlock(block) {
    let event = "message";
    const data = [];
    for (const raw of block.split("\n")) {
      const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
      if (!line || line.startsWith(":")) continue; // comments are keep-alive pings
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    return data.length ? { event, data: data.join("\n") } : null;
  }

  // ----------------------------------------------------------------------------------- rendering
  class AnswerView {
    constructor(sent) {
      this.question = sent; // as answered: the standalone question once the server names it
      this.ended = false; // by `done` or `error`
      this.passages = 0;
      this.heading = el("h2", { id: "ask-answer-heading", tabindex: "-1" }, "Answer");
      this.status = el("p", { class: "ask-status", id: "ask-status" }, "Searching…");
      this.text = el("div", { class: "ask-text", id: "ask-text" });
      region.replaceChildren(this.heading, this.status, this.text);
    }

    asked(standalone, rewritten) {
      this.question = standalone;
      if (rewritten) {
        this.status.after(el("p", { class: "ask-asked", id: "ask-asked" }, `Answered as: “${standalone}”`));
      }
    }

    on(event, data) {
      if (event === "retrieval") this.retrieval(data);
      else if (event === "sentence") this.sentence(data);
      else if (event === "citations") this.citations(data);
      else if (event === "followups") this.followups(data);
      else if (event === "done") this.done(data);
      else if (event === "error") {
        this.ended = true;
        this.failed();
        showError(data.error.message);
      }
    }

    retrieval(data) {
      this.passages = data.hits.length;
      this.requestId = data.request_id;
      this.status.textContent = `${plural(this.passages, "passage")} found · answering…`;
    }

    sentence(data) {
      const span = el("span", { class: "ask-sentence" }, data.text);
      for (const marker of data.markers) span.append(reference(marker));
      this.text.append(span, " ");
    }

    citations(data) {
      this.outcome = data.outcome;
      this.status.textContent = `${plural(this.passages, "passage")} found · ${OUTCOME_STATUS[data.outcome]}`;
      const banner = outcomeBanner(data);
      this.text.before(banner);
      if (data.outcome === "abstained") this.text.remove();
      if (data.outcome === "possibly_relevant") this.text.classList.add("ask-quoted");
      if (data.short) {
        banner.after(el("p", { class: "ask-short", id: "ask-short" }, "Short answer: ",
          el("mark", {}, data.short.text), " ", reference(data.short.marker)));
      }
      const parts = [];
      if (data.citations.length) {
        parts.push(el("h3", {}, "Sources"),
          el("ol", { class: "ask-citations", id: "ask-citations" }, ...data.citations.map((c) => citation(c, data))));
      }
      if (data.products.length) {
        parts.push(el("h3", {}, "Products cited"),
          el("ul", { class: "ask-products", id: "ask-products-cited" }, ...data.products.map(productItem)));
      }
      region.append(...parts);
    }

    // Suggested next questions, as the server decided them (api/web/ask.py follow_ups).
    followups(suggestions) {
      if (!suggestions.length) return;
      region.append(el("h3", {}, "Follow up"),
        el("ul", { class: "ask-followups", id: "ask-followups" }, ...suggestions.map(followUpItem)));
    }

    done(data) {
      this.ended = true;
      region.dataset.askState = "done";
      const id = el("code", {}, data.request_id);
      const release = el("code", {}, data.release_id);
      const line = signedIn
        ? [el("a", { id: "ask-provenance-link", href: `/provenance/${encodeURIComponent(data.request_id)}` },
          "Provenance record"), " of this answer (who asked, which release and passages answered it): "]
        : ["Request id "];
      region.append(el("p", { class: "ask-provenance", id: "ask-provenance" }, ...line, id, " · release ", release));
      rememberPrevious(this.question);
      this.heading.focus();
    }

    failed() {
      region.dataset.askState = "failed";
      this.status.textContent = "No answer.";
    }
  }

  function outcomeBanner(data) {
    if (data.outcome === "abstained") {
      const box = el("div", { class: "ask-outcome ask-abstained", id: "ask-outcome", "data-outcome": "abstained" },
        el("p", {}, el("strong", {}, "Not found in the products you can read."),
          " Nothing you may read supports an answer, so none is given."));
      const closest = data.closest_products.filter((id) => productOption(id));
      if (closest.length) {
        box.append(el("p", {}, "The closest products you can read:"),
          el("ul", { class: "ask-closest" }, ...closest.map((id) => {
            const option = productOption(id);
            return el("li", {}, el("a", { href: `/catalog/${encodeURIComponent(id)}` }, option.dataset.name), " ",
              badge(option.dataset.classification));
          })));
      }
      return box;
    }
    if (data.outcome === "possibly_relevant") {
      return el("div", { class: "ask-outcome ask-possibly", id: "ask-outcome", "data-outcome": "possibly_relevant" },
        el("p", {}, el("strong", {}, "No confirmed answer."), " These passages from the products you can read " +
          "may be relevant. They are quoted as found, not an answer to the question."));
    }
    return el("div", { class: "ask-outcome ask-answered", id: "ask-outcome", "data-outcome": "answered", hidden: "" });
  }

  function citation(c, data) {
    const path = [productName(c.product_id, data), c.document, ...c.heading_path].join(" › ");
    const passage = el("blockquote", { class: "ask-passage" });
    const short = data.short && data.short.marker === c.marker ? data.short : null;
    if (short) {
      passage.append(c.text.slice(0, short.start), el("mark", {}, c.text.slice(short.start, short.end)),
        c.text.slice(short.end));
    } else {
      passage.textContent = c.text;
    }
    return el("li", { id: `ask-cite-${c.marker}`, value: String(c.marker) },
      el("a", { class: "ask-cite-link", href: documentHref(c) }, path),
      el("details", {}, el("summary", {}, "Cited passage"), passage));
  }

  // As api/web/documents.py document_href builds it.
  function documentHref(c) {
    const path = c.document.split("/").map(encodeURIComponent).join("/");
    const query = new URLSearchParams({ release: c.release_id, start: String(c.start), end: String(c.end) });
    return `/documents/${encodeURIComponent(c.product_id)}/${path}?${query}#cited`;
  }

  function productItem(p) {
    const fresh = p.freshness;
    const title = (fresh.age_days != null ? `updated ${fresh.age_days.toFixed(1)} days ago; ` : "") +
      `freshness SLA ${fresh.sla_days.toFixed(1)} days`;
    return el("li", {}, el("a", { href: `/catalog/${encodeURIComponent(p.id)}` }, p.name), " ",
      badge(p.classification), " ", el("span", { class: `badge ${fresh.status}`, title }, fresh.status), " ",
      el("span", { class: "ask-owner" }, `Owner: ${p.owner} (${p.team})`));
  }

  function followUpItem(f) {
    const fields = [el("input", { type: "hidden", name: "question", value: f.question }),
      el("input", { type: "hidden", name: "products", value: f.product })];
    if (csrfInput) fields.unshift(el("input", { type: "hidden", name: csrfField, value: csrfInput.value }));
    return el("li", {}, el("form", { method: "post", action: "/ask", class: "ask-followup" }, ...fields,
      el("button", { type: "submit", class: "secondary" }, f.label)));
  }

  function rememberPrevious(asked) {
    previous.value = asked;
    previous.checked = true;
    previousText.textContent = asked;
    previousRow.hidden = false;
  }

  function reference(marker) {
    return el("sup", {}, el("a", { class: "ask-ref", href: `#ask-cite-${marker}` }, `[${marker}]`));
  }

  function badge(classification) {
    return el("span", { class: `badge ${classification}` }, classification);
  }

  function productOption(id) {
    return Array.from(products.options).find((o) => o.value === id && o.value !== "") || null;
  }

  function productName(id, data) {
    const cited = data.products.find((p) => p.id === id);
    return cited ? cited.name : (productOption(id) ? productOption(id).dataset.name : id);
  }

  function plural(n, word) {
    return `${n} ${word}${n === 1 ? "" : "s"}`;
  }

  // An element with attributes and children (strings become text nodes: never parsed as HTML).
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    node.append(...children);
    return node;
  }
})();
