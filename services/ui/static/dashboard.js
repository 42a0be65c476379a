// The dashboard: fresh figures pushed by the server every few seconds (server-sent events).
"use strict";
(() => {
  const set = (id, value) => { const node = document.getElementById(id); if (node) node.textContent = value; };
  const rate = (value) => (value === null || value === undefined ? "—" : value.toFixed(1));
  const line = (id, points) => {
    const node = document.getElementById(id);
    if (!node) return;
    if (!points || points.length === 0) { node.setAttribute("points", ""); return; }
    const span = Math.max(...points.map((p) => p[0])) || 1;
    const top = Math.max(...points.map((p) => p[1])) || 1;
    node.setAttribute("points", points.map(([age, value]) =>
      `${(300 * (1 - age / span)).toFixed(1)},${(60 - (60 * value) / top).toFixed(1)}`).join(" "));
  };
  const cell = (value, numeric) => {
    const td = document.createElement("td");
    td.textContent = value;
    if (numeric) td.className = "num";
    return td;
  };
  function rows(tableId, items, make) {
    const body = document.querySelector(`#${tableId} tbody`);
    if (!body || !items) return;
    body.replaceChildren(...items.map((item) => { const tr = document.createElement("tr"); tr.append(...make(item)); return tr; }));
  }

  function show(figures) {
    const cluster = figures.cluster;
    if (cluster && !cluster.error) {
      set("leader", cluster.leader || "none");
      const consistent = document.getElementById("consistent");
      if (consistent) {
        consistent.textContent = cluster.consistent ? "agree" : "DISAGREE";
        consistent.className = cluster.consistent ? "good" : "bad";
      }
      rows("nodes", cluster.nodes, (n) => [cell(n.node_id), cell(n.host), cell(n.role),
        cell(n.applied_sequence, true), cell(n.lag, true), cell(n.log_hash), cell(n.stalled || "ok")]);
    }
    set("appends-now", rate(figures.appends.now));
    line("appends-line", figures.appends.points);
    if (figures.reads) { set("reads-now", rate(figures.reads.now)); line("reads-line", figures.reads.points); }
    if (figures.sampled_at) set("sampled", `Sampled ${new Date(figures.sampled_at).toLocaleTimeString()}.`);
    if (figures.stores.length) {
      rows("disk", figures.stores, (s) => {
        const name = cell("");
        const link = document.createElement("a");
        link.href = `/streams?store=${encodeURIComponent(s.store)}`;
        link.textContent = s.store;
        name.append(link);
        return [name, cell(s.last_position ?? "—", true), cell(s.size, true)];
      });
    }
  }

  const source = new EventSource("/dashboard/events");
  source.addEventListener("figures", (message) => show(JSON.parse(message.data)));
  window.addEventListener("pagehide", () => source.close());
})();
