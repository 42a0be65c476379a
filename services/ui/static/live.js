// The live page: events pushed by the server (server-sent events), newest first. Pausing
// closes the stream; resuming reopens it from the last position shown, so the server sends
// what was committed meanwhile from the store, then goes on live. No polling.
"use strict";
(() => {
  const list = document.getElementById("live-events");
  const state = document.getElementById("live-state");
  const empty = document.getElementById("live-empty");
  const pause = document.getElementById("pause");
  const skippedNote = document.getElementById("live-skipped");
  const KEEP = 500;
  const store = list.dataset.store;
  let source = null;
  let last = null;
  let paused = false;
  let pending = [];
  let drawing = false;
  let received = 0;

  const text = (tag, cls, value) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    node.textContent = value;
    return node;
  };
  const pretty = (value, contentType) => {
    if (value === null || value === undefined) return null;
    if (contentType === "application/json") return JSON.stringify(value, null, 2);
    return `${contentType}, base64: ${value}`;
  };
  const streamUrl = (stream) =>
    `/streams/${encodeURIComponent(stream)}?store=${encodeURIComponent(store)}`;

  function row(event) {
    const item = document.createElement("li");
    item.className = "event fresh";
    item.dataset.position = event.position;
    item.dataset.eventId = event.event_id;
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.append(text("span", "pos", `@${event.position}`));
    const link = text("a", "stream", event.stream_id);
    link.href = streamUrl(event.stream_id);
    summary.append(link, text("span", "ver", `#${event.version}`), text("span", "type", event.event_type));
    const time = text("time", "", new Date(event.created).toLocaleTimeString());
    time.dateTime = event.created;
    summary.append(time);
    if (event.data !== null && event.data !== undefined && event.content_type === "application/json") {
      const line = JSON.stringify(event.data);
      summary.append(text("code", "preview", line.length > 100 ? `${line.slice(0, 99)}…` : line));
    }
    details.append(summary);
    for (const [label, value] of [["Data", event.data], ["Metadata", event.metadata]]) {
      const shown = pretty(value, event.content_type);
      details.append(text("h3", "", label));
      details.append(shown === null ? text("p", "empty", `no ${label.toLowerCase()}`) : text("pre", "payload", shown));
    }
    item.append(details);
    return item;
  }

  function draw() {
    drawing = false;
    if (!pending.length) return;
    const batch = pending.slice(-KEEP);
    pending = [];
    const fragment = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= 0; i--) fragment.append(row(batch[i]));
    list.prepend(fragment);
    while (list.childElementCount > KEEP) list.lastElementChild.remove();
    empty.hidden = true;
    list.dataset.received = received;
    state.textContent = `live · ${received} received`;
  }

  function open() {
    const url = new URL(list.dataset.source, location.href);
    if (last !== null) url.searchParams.set("after", last);
    source = new EventSource(url);
    state.textContent = last === null ? "connecting…" : "catching up…";
    source.onopen = () => { state.textContent = `live · ${received} received`; };
    source.addEventListener("event", (message) => {
      const event = JSON.parse(message.data);
      last = event.position;
      received += 1;
      pending.push(event);
      if (!drawing) { drawing = true; requestAnimationFrame(draw); }
    });
    source.addEventListener("gap", () => {
      // The server could not keep up with this page: resume from the last event shown,
      // reading the rest from the store.
      source.close();
      open();
    });
    source.addEventListener("opened", (message) => {
      // The store's newest position as the feed opened: a pause before any event resumes
      // from there.
      if (last === null) last = JSON.parse(message.data).head;
    });
    source.addEventListener("skipped", (message) => {
      // Paused for long: the server goes on from the newest events, not from the pause.
      const to = JSON.parse(message.data).skipped_to;
      skippedNote.textContent = `Events before position ${to} were skipped: the page was paused too long to show them all.`;
      skippedNote.hidden = false;
    });
    source.addEventListener("problem", (message) => {
      state.textContent = `problem: ${JSON.parse(message.data).message}`;
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) state.textContent = "disconnected";
      else state.textContent = "reconnecting…";
    };
  }

  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume" : "Pause";
    if (paused) {
      source.close();
      state.textContent = `paused at position ${last ?? "—"}`;
    } else {
      open();
    }
  });
  window.addEventListener("pagehide", () => source && source.close());
  open();
})();
