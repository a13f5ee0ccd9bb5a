// superpose explain: draws the page from the inline JSON data (no libraries, no network).
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("superpose-data").textContent);
  const SVG_NS = "http://www.w3.org/2000/svg"; // the SVG namespace name; nothing is fetched
  const app = document.getElementById("app");
  const tooltip = document.getElementById("tooltip");

  // --- small helpers --------------------------------------------------------------------
  function attrs(node, values) {
    for (const [key, value] of Object.entries(values || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    return node;
  }
  function el(tag, values, ...children) {
    const node = attrs(document.createElement(tag), values);
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }
  function svg(tag, values) { return attrs(document.createElementNS(SVG_NS, tag), values); }
  function sci(x, digits = 2) {
    if (x === null || x === undefined) return "—";
    return x === 0 ? "0" : x.toExponential(digits);
  }
  function weightText(w) {
    if (w === null || w === undefined) return "—";
    if (w === 0) return "0";
    return Math.abs(w) >= 1e-3 ? w.toFixed(4) : w.toExponential(2);
  }
  function plural(n, word) { return `${n} ${word}${n === 1 ? "" : "s"}`; }
  function errorText(x) { return x === null || x === undefined ? "not finite (the model's output overflowed)" : sci(x); }

  const tasks = data.tasks.tasks;
  const shown = data.shown;                               // positions on the page, in order
  const index = new Map(shown.map((t, i) => [t, i]));     // position -> index into per-position arrays
  const tokenAt = new Map(data.tokens.map((tok) => [tok.t, tok]));
  const hidden = data.hidden;                             // null, or the folded positions 1..last
  // columns of every positions axis: BOS, the fold ("gap") if any, then the rest
  const columns = hidden ? [shown[0], "gap", ...shown.slice(1)] : shown.slice();
  const layersByNumber = new Map(data.layers.map((layer) => [layer.number, layer]));

  function describeToken(t) {
    const tok = tokenAt.get(t);
    if (!tok) return `position ${t}`;
    const where = tok.example === "query" ? "the query" : (tok.example !== undefined ? `example ${tok.example}` : "");
    const role = {
      bos: "BOS, the start of the prompt",
      input: `${where}, input slot ${tok.slot}`,
      arrow: tok.example === "query" ? "the query's ARROW: the answer is read out here"
                                     : `${where}, ARROW (a prediction position)`,
      answer: tok.answer_token === undefined ? `${where}, answer`
        : (tok.example === "query" ? `the query, answer token ${tok.answer_token} (generated so far)`
                                   : `${where}, answer token ${tok.answer_token}`),
    }[tok.role];
    return `position ${t} '${tok.name}': ${role}`;
  }
  function short(name, n = 8) { return name.length > n ? name.slice(0, n - 1) + "…" : name; }
  function tokenLabel(t) { return t === "gap" ? "…" : `${t} ${short(tokenAt.get(t).name)}`; }

  // --- header -------------------------------------------------------------------------------
  function header() {
    const m = data.model, out = data.outputs;
    const taskList = tasks.map((task) => `${task.name} (slot${task.slots.length > 1 ? "s" : ""} ${task.slots.join(", ")})`);
    const statusText = { within_bound: "within the bound", no_bound: "no bound", bound_violated: "NOT within the bound" };
    const node = el("header", { id: "top" },
      el("h1", { text: "One prompt through the seven layers" }),
      el("p", { class: "summary" },
        `Task set: d = ${data.tasks.vocab_size} content tokens, s = ${data.tasks.slots} input slot${data.tasks.slots > 1 ? "s" : ""}, `
        + `K = ${data.tasks.K} task${data.tasks.K > 1 ? "s" : ""}: ${taskList.join("; ")}.`),
      el("p", { class: "summary" },
        `Prompt: ${plural(data.n_examples, "example")} and a query, ${data.T} tokens`
        + (data.answer_length > 1 ? ` (answers of ${data.answer_length} tokens, ${data.conditioned ? "conditioned on the answer so far" : "marginal variant"})` : "")
        + `. Model: ${m.layers} layers, `
        + `${plural(m.heads, "head")} per attention layer${data.answer_length === 1 ? " (one per input slot read)" : ""}, d_model ${m.d_model}, `
        + `${m.params.toLocaleString("en")} parameters, sharpness ${m.sharpness}, run in ${data.dtype}. `),
      el("p", {},
        el("span", { class: `status ${out.status}`, id: "status", text: statusText[out.status] || out.status }),
        ` max |model − analytic| over all ${plural(out.n_predictions, "prediction position")}: `,
        el("b", { text: errorText(out.max_abs_error) }),
        out.bound.total !== null && out.bound.total !== undefined ? `; error bound ${sci(out.bound.total)}.` : "."),
    );
    if (hidden) {
      const last = shown.length > 1 ? shown[1] : data.T;
      node.append(el("p", { class: "banner", id: "summarised" },
        `This prompt has ${data.T} tokens; the page is readable up to about ${data.readable_tokens}, so it `
        + `summarises: it shows BOS, the last ${plural(data.shares.examples.length, "example")} and the query `
        + `(positions ${last}–${data.T - 1}). The ${plural(hidden.examples.length, "example")} in between `
        + `(positions ${hidden.first}–${hidden.last}) are folded into the “…” column: in a heatmap it holds the `
        + `attention weight summed over them, and the tables skip them. The task shares, the error and the bound `
        + `count every example.`));
    }
    node.append(el("details", { class: "howto", open: true },
      el("summary", { text: "How to read this page" }),
      el("ul", {},
        el("li", { text: data.answer_length > 1
          ? `The prompt is a row of tokens: BOS, then each example's inputs, an ARROW and its ${data.answer_length} answer tokens, then the query's inputs, its ARROW and the answer tokens generated so far. Every ARROW and every answer token but an example's last is a prediction position: the model's output there is the next answer token given the examples before it and the answer so far.`
          : "The prompt is a row of tokens: BOS, then each example's inputs, an ARROW and its answer, then the query's inputs and its ARROW. Every ARROW is a prediction position: the model's output there is its answer given the examples before it." }),
        el("li", { text: "Each layer has an attention sublayer and an MLP. A heatmap shows one head: row = the position that looks (query), column = the position it looks at (key), darker = more weight; grey cells lie in the future (causal mask). Hover for the numbers." }),
        el("li", { text: "Below the heads, a table lists the named residual entries the sublayer writes (rows) at every position (columns). Non-zero changes are bold and coloured (blue added, red removed); “·” means no change." }),
        el("li", { text: "Click a token (or a column, or a heatmap row) to follow that position: the orange outline marks what it writes, red outlines what it reads through the heads, and a note under each layer spells both out. The query's ARROW is selected at first." }),
        el("li", { text: "At the end: the model's answer at every prediction position next to the analytic prediction (the task shares of the examples), with the error and the bound." }),
      )));
    return node;
  }

  // --- the prompt -------------------------------------------------------------------------------
  function tokenChip(t) {
    if (t === "gap") {
      return el("span", { class: "tok gap", "data-tip": "gap" },
        el("span", { class: "pos", text: `${hidden.first}–${hidden.last}` }), el("span", { class: "name", text: "…" }));
    }
    const tok = tokenAt.get(t);
    const query = tok.example === "query" ? " query" : "";
    return el("span", { class: `tok role-${tok.role}${query}`, "data-pos": t, "data-tip": "token", tabindex: 0 },
      el("span", { class: "pos", text: t }), el("span", { class: "name", text: tok.name }));
  }
  function promptSection() {
    return el("section", { id: "prompt" },
      el("h2", { text: "The prompt" }),
      el("p", { class: "legend" }, "Colours: ",
        el("span", { class: "role-bos" }, el("b", { class: "name", text: "BOS" })), ", ",
        el("span", { class: "role-input" }, el("b", { class: "name", text: "example input" })), ", ",
        el("span", { class: "role-arrow" }, el("b", { class: "name", text: "ARROW" })), ", ",
        el("span", { class: "role-answer" }, el("b", { class: "name", text: "answer" })), ", ",
        el("span", { class: "query role-input" }, el("b", { class: "name", text: "query" })), ". Click a token to follow it."),
      el("div", { class: "tokens", id: "tokens" }, columns.map(tokenChip)));
  }

  // --- task shares ----------------------------------------------------------------------------
  function sharesSection() {
    const sh = data.shares;
    const head = el("tr", {}, el("th", { class: "left", text: "example" }), el("th", { class: "left", text: "inputs" }),
      el("th", { class: "left", text: "answer" }), el("th", { class: "left", text: "fits" }),
      tasks.map((task) => el("th", { text: `vote: ${task.name}` })));
    const rows = sh.examples.map((ex) => el("tr", { "data-example": ex.index },
      el("td", { class: "left", text: ex.index }), el("td", { class: "left", text: ex.inputs.join(", ") }),
      el("td", { class: "left", text: ex.answer }),
      el("td", { class: "left", text: ex.fits.length ? ex.fits.map((k) => tasks[k].name).join(", ") : "no task (noise: ignored)" }),
      ex.votes.map((v) => el("td", { text: v || "·" }))));
    const foot = [
      el("tr", {}, el("td", { class: "left", colspan: 4, text: `votes, all ${plural(sh.n_examples, "example")}` }),
        sh.votes_text.map((v) => el("td", { text: v }))),
      el("tr", { id: "shares" }, el("td", { class: "left", colspan: 4,
        text: sh.prior ? "share p_k: no example fits a task, so the prior 1/K"
                       : `share p_k = votes / ${plural(sh.consistent, "consistent example")}` }),
        sh.shares_text.map((v, k) => el("td", { "data-task": k, text: v }))),
    ];
    return el("section", { id: "task-shares" },
      el("h2", { text: "Task shares from the examples" }),
      el("p", { class: "does", text: "An example fits a task when the task maps its inputs to its answer. An example that fits C tasks gives each of them a vote of 1/C; one that fits none is noise and is ignored. A task's share is its votes over the number of consistent examples. The model computes exactly this in layers 2–5." }),
      hidden ? el("p", { class: "muted", text: `Examples ${hidden.examples[0]}–${hidden.examples[hidden.examples.length - 1]} are folded (not listed); the totals count every example.` }) : null,
      el("div", { class: "scroll" }, el("table", { class: "plain" }, el("thead", {}, head), el("tbody", {}, rows), el("tfoot", {}, foot))));
  }

  // --- one layer ------------------------------------------------------------------------------
  function colour(w) {
    if (w === null) return "#000";
    const s = Math.sqrt(Math.max(0, Math.min(1, w)));
    const mix = (a, b) => Math.round(a + (b - a) * s);
    return `rgb(${mix(247, 8)},${mix(251, 48)},${mix(255, 107)})`;
  }
  function heatmap(layer, head) {
    const nk = columns.length, nq = shown.length;
    const c = Math.max(5, Math.min(11, Math.floor(480 / nk)));
    const labels = c >= 9;
    // room for the longest axis label (10px monospace: about 6px a character; the column labels are turned 60°)
    const longest = Math.max(...columns.map((k) => (labels ? tokenLabel(k) : String(k)).length));
    const left = Math.ceil(10 + 6.2 * longest), top = Math.ceil(12 + 5.4 * longest);
    const width = left + nk * c + 2, height = top + nq * c + 2;
    const node = svg("svg", { class: "heatmap", width, height, viewBox: `0 0 ${width} ${height}`,
      "data-layer": layer.number, "data-head": head.index, role: "img",
      "aria-label": `layer ${layer.number} head ${head.index} attention pattern` });
    columns.forEach((k, j) => {
      if (!labels && k !== "gap" && k % 5 !== 0) return;
      const x = left + j * c + c / 2 + 3, y = top - 4;
      node.append(attrs(svg("text", { x, y, transform: `rotate(-60 ${x} ${y})` }),
        { text: labels ? tokenLabel(k) : (k === "gap" ? "…" : k) }));
    });
    shown.forEach((q, i) => {
      if (labels || q % 5 === 0) {
        node.append(attrs(svg("text", { x: left - 4, y: top + i * c + c - 2, "text-anchor": "end" }),
          { text: labels ? tokenLabel(q) : q }));
      }
      const row = head.pattern[i];
      columns.forEach((k, j) => {
        const masked = k === "gap" ? q < hidden.first : k > q;
        node.append(svg("rect", { class: masked ? "cell masked" : "cell", x: left + j * c, y: top + i * c,
          width: c, height: c, fill: masked ? null : colour(row[j]), "data-q": q, "data-k": k, "data-col": j,
          "data-w": masked ? null : row[j], "data-tip": "attention" }));
      });
    });
    node.append(svg("g", { class: "overlay" }));
    node.dataset.cell = c; node.dataset.left = left; node.dataset.top = top;
    return node;
  }
  function headFigure(layer, head) {
    const reads = `query reads ${head.query_reads.join(", ") || "—"}; key reads ${head.key_reads.join(", ") || "—"}; `
      + `value reads ${head.value_reads.join(", ") || "—"}; writes ${head.writes.join(", ") || "—"}`;
    return el("figure", { class: "head", "data-layer": layer.number, "data-head": head.index },
      el("figcaption", {}, el("b", { text: `head ${head.index}: ` }), head.label, el("br"), el("span", { class: "mono", text: reads })),
      heatmap(layer, head));
  }
  function writesTable(layer, part) {
    const sub = layer[part];
    if (!sub.rows.length) {
      let why;
      if (part === "attention") why = layer.heads.length ? "The heads change no entry at the positions shown." : "No heads: this attention sublayer adds nothing.";
      else why = layer.n_units ? "The MLP changes no entry at the positions shown." : "No units: this MLP adds nothing.";
      return el("p", { class: "nothing", "data-layer": layer.number, "data-part": part, text: why });
    }
    const headRow = el("tr", {}, el("th", { class: "label", text: "entry \\ position" }),
      columns.map((t) => t === "gap" ? el("th", { class: "gap", text: "…" })
        : el("th", { "data-pos": t, "data-tip": "token" }, el("span", { class: "pos", text: t }), tokenAt.get(t).name)));
    const body = sub.rows.map((row, r) => el("tr", { "data-entry": row.label },
      el("th", { class: "label", title: `${row.label} (block ${row.block})`, text: row.name }),
      columns.map((t) => {
        if (t === "gap") return el("td", { class: "gap", text: "…" });
        const i = index.get(t), text = row.text[i];
        const cls = text ? `nz ${row.delta[i] > 0 ? "up" : "down"}` : null;
        return el("td", { class: cls, "data-pos": t, "data-row": r, "data-tip": "write", text: text || "·" });
      })));
    return el("div", { class: "scroll" }, el("table", { class: "writes", "data-layer": layer.number, "data-part": part },
      el("thead", {}, headRow), el("tbody", {}, body)));
  }
  function layerSection(layer) {
    const ex = layer.exact;
    const exactText = `The spec states the exact value (hard attention, exact arithmetic) of every block this layer writes `
      + `(${ex.blocks.join(", ")}) at ${plural(ex.positions, "position")}: max |model − exact| = ${sci(ex.max_abs_diff)}.`;
    const heads = layer.heads.length
      ? el("div", { class: "heads" }, layer.heads.map((head) => headFigure(layer, head)))
      : null;
    return el("section", { class: "layer", id: `layer-${layer.number}`, "data-layer": layer.number },
      el("header", {}, el("span", { class: "layer-number", text: `Layer ${layer.number}` }),
        el("h2", { text: layer.title })),
      el("p", { class: "in-words", text: layer.in_words }),
      el("p", { class: "muted mono", text: `reads ${layer.reads.join(", ")}  →  writes ${layer.writes.join(", ")}` }),
      el("div", { class: "sublayer attention" },
        el("h3", { text: `Attention · ${plural(layer.n_heads, "head")} (${layer.heads_formula})` }),
        el("p", { class: "does", text: layer.attention_does === "(none)" ? "—" : layer.attention_does }),
        heads,
        layer.heads.length ? el("p", { class: "legend", text: "Colour grows with √weight (white 0, dark blue 1); grey: future positions (masked). Hover a cell for the numbers." }) : null,
        writesTable(layer, "attention")),
      el("div", { class: "sublayer mlp" },
        el("h3", { text: `MLP · ${plural(layer.n_units, "unit")} (${layer.units_formula})` }),
        el("p", { class: "does", text: layer.mlp_does === "(none)" ? "—" : layer.mlp_does }),
        writesTable(layer, "mlp")),
      el("p", { class: "exact", text: exactText }),
      el("div", { class: "panel", "data-layer": layer.number }));
  }

  // --- outputs ---------------------------------------------------------------------------------
  function outputSection() {
    const out = data.outputs, q = out.query, names = q.token_names, tol = data.tolerance;
    const byAnswer = new Map();
    q.answers.forEach((v, k) => { if (v !== null) byAnswer.set(v, [...(byAnswer.get(v) || []), k]); });
    const listed = names.map((_, v) => v).filter((v) =>
      q.analytic[v] !== 0 || q.model[v] === null || Math.abs(q.model[v]) > tol || byAnswer.has(v));
    listed.sort((a, b) => (q.analytic[b] - q.analytic[a]) || (a - b));
    const rows = listed.map((v) => {
      const model = q.model[v], analytic = q.analytic[v];
      const err = model === null ? null : Math.abs(model - analytic);
      const of = (byAnswer.get(v) || []).map((k) => `${tasks[k].name} (${data.shares.shares_text[k]})`).join(" + ");
      return el("tr", { "data-token": v },
        el("td", { class: "left", text: names[v] }),
        el("td", { class: "model", "data-token": v, "data-value": model === null ? "null" : String(model) },
          el("span", { class: "bar", style: `width:${Math.round(80 * Math.max(0, Math.min(1, model || 0)))}px` }),
          model === null ? "—" : model.toFixed(9)),
        el("td", { class: "model analytic", "data-token": v, "data-value": String(analytic) },
          el("span", { class: "bar analytic", style: `width:${Math.round(80 * analytic)}px` }), analytic.toFixed(9)),
        el("td", { text: q.analytic_text[v] }),
        el("td", { class: "error", text: sci(err) }),
        el("td", { class: "left", text: of || "—" }));
    });
    const rest = names.length - listed.length;
    const restMax = Math.max(0, ...names.map((_, v) => v).filter((v) => !listed.includes(v)).map((v) => Math.abs(q.model[v])));
    const bound = out.bound;
    const measured = `max |model − analytic| over all ${plural(out.n_predictions, "prediction position")}: ${errorText(out.max_abs_error)}`;
    const boundText = out.status === "no_bound"
      ? `No error bound: ${out.no_bound_reason}. Measured ${measured}.`
      : `Error bound at this length (sharpness ${data.model.sharpness}, ${data.dtype}): ${sci(bound.total)} = leak ${sci(bound.leak, 1)} + rounding ${sci(bound.rounding, 1)}; `
        + `${measured} ` + (out.status === "within_bound" ? "(within the bound)." : "(NOT within the bound).");

    // every prediction position shown: the in-context learning curve
    const used = names.map((_, v) => v).filter((v) => out.predictions.some((p) =>
      p.analytic[v] !== 0 || p.model[v] === null || Math.abs(p.model[v]) > tol));
    const curveHead = el("tr", {}, el("th", { class: "left", text: "position" }), el("th", { class: "left", text: "inputs" }),
      used.map((v) => el("th", { text: names[v] })), el("th", { text: "max |error|" }));
    const siteText = (p) => {
      const who = p.example === "query" ? "query" : (data.answer_length > 1 ? `example ${p.example}` : "after " + plural(p.example, "example"));
      return data.answer_length > 1 ? `${p.t} (${who}, answer token ${p.answer_token})` : `${p.t} (${who})`;
    };
    const curveRows = out.predictions.map((p, r) => el("tr", { "data-pos": p.t },
      el("td", { class: "left", "data-pos": p.t, "data-tip": "token", text: siteText(p) }),
      el("td", { class: "left", text: p.inputs.join(", ") }),
      used.map((v) => {
        const value = p.model[v];
        const shade = value === null ? 0 : Math.max(0, Math.min(1, value));
        const text = value === null ? "—" : (Math.abs(value) > tol ? value.toFixed(3) : "·");
        return el("td", { style: `background: rgba(37, 99, 235, ${(0.6 * shade).toFixed(3)})`, "data-tip": "output",
          "data-row": r, "data-token": v, text });
      }),
      el("td", { text: sci(p.max_abs_error) + (p.exact === false ? " *" : ""), title: p.reason || null })));
    const notExact = out.predictions.some((p) => p.exact === false)
      ? el("p", { class: "muted", text: "* Not claimed exact: an earlier example fits tasks on both sides of the answer so far, so the conditioned prediction is not the plain average of votes the construction computes (hover for the example); the bound does not apply there." })
      : null;
    const captureNote = out.capture_vs_report
      ? ` (The layer tables come from a second forward pass with activation capture; its readout differs from these numbers by at most ${sci(out.capture_vs_report)}.)` : "";
    return el("section", { id: "output" },
      el("h2", { text: "The answer: model vs analytic prediction" }),
      el("p", { class: "does", text: (q.prefix.length
        ? `At the query's answer token ${q.prefix.length - 1} (position ${q.t}, inputs ${q.inputs.join(", ")}, answer so far ${q.prefix.join(" ")}) the readout of the out block is the distribution of the next answer token. `
        : `At the query's ARROW (position ${q.t}, inputs ${q.inputs.join(", ")}) the readout of the out block is the ${data.answer_length > 1 ? "distribution of the first answer token" : "answer distribution"}. `)
        + `These are the numbers \`superpose run --json\` prints for this prompt (the same function computes them).${captureNote}`
        + (q.exact === false ? ` Not claimed exact here: ${q.reason}.` : "") }),
      el("div", { class: "scroll" }, el("table", { class: "plain", id: "query-output", "data-output": "query" },
        el("thead", {}, el("tr", {}, el("th", { class: "left", text: "token" }), el("th", { text: "model" }),
          el("th", { text: "analytic" }), el("th", { text: "exact" }), el("th", { text: "|error|" }),
          el("th", { class: "left", text: "answer of (task share)" }))),
        el("tbody", {}, rows))),
      rest ? el("p", { class: "muted", text: `Every other token (${rest}): largest |model probability| = ${sci(restMax)}.` }) : null,
      el("p", { id: "bound", text: boundText }),
      el("h3", { text: "Every prediction position (the in-context learning curve)" }),
      el("p", { class: "does", text: "Each row is the model's output at one ARROW, given the examples before it (probabilities to 3 digits; hover for model, analytic and error)." }),
      el("div", { class: "scroll" }, el("table", { class: "plain curve", id: "curve" }, el("thead", {}, curveHead), el("tbody", {}, curveRows))),
      notExact);
  }

  // --- tooltips ----------------------------------------------------------------------------------
  function tipText(target) {
    const kind = target.dataset.tip;
    if (kind === "token") return describeToken(Number(target.dataset.pos));
    if (kind === "gap") return `positions ${hidden.first}–${hidden.last}: ${plural(hidden.examples.length, "example")} folded (the prompt is longer than ${data.readable_tokens} tokens)`;
    if (kind === "attention") {
      const svgNode = target.ownerSVGElement;
      const layer = svgNode.dataset.layer, head = svgNode.dataset.head;
      const q = Number(target.dataset.q), k = target.dataset.k;
      const key = k === "gap" ? `positions ${hidden.first}–${hidden.last} (folded; weight summed)` : `key position ${k} '${tokenAt.get(Number(k)).name}'`;
      const w = target.dataset.w === undefined ? "masked (a future position)" : weightText(Number(target.dataset.w));
      return `layer ${layer}, head ${head}\nquery position ${q} '${tokenAt.get(q).name}'\n${key}\nweight ${w}`;
    }
    if (kind === "write") {
      const table = target.closest("table");
      const layer = layersByNumber.get(Number(table.dataset.layer)), part = table.dataset.part;
      const row = layer[part].rows[Number(target.dataset.row)], t = Number(target.dataset.pos), i = index.get(t);
      const change = row.delta[i], after = row.after[i];
      return `${describeToken(t)}\n${row.name}  (${row.label})\nlayer ${layer.number} ${part === "mlp" ? "MLP" : "attention"} changes it by ${change}\nvalue after this sublayer: ${after}`;
    }
    if (kind === "output") {
      const p = data.outputs.predictions[Number(target.dataset.row)], v = Number(target.dataset.token);
      const model = p.model[v], analytic = p.analytic[v];
      return `position ${p.t}, token '${data.outputs.query.token_names[v]}'\nmodel ${model}\nanalytic ${analytic} (${p.analytic_text[v]})\n|error| ${model === null ? "—" : sci(Math.abs(model - analytic))}`;
    }
    return null;
  }
  function showTip(event) {
    const target = event.target.closest ? event.target.closest("[data-tip]") : null;
    const text = target ? tipText(target) : null;
    if (!text) { tooltip.hidden = true; return; }
    tooltip.textContent = text;
    tooltip.hidden = false;
    const x = Math.min(event.clientX + 14, window.innerWidth - tooltip.offsetWidth - 6);
    const y = event.clientY + 16 + tooltip.offsetHeight > window.innerHeight ? event.clientY - tooltip.offsetHeight - 10 : event.clientY + 16;
    tooltip.style.left = `${Math.max(4, x)}px`;
    tooltip.style.top = `${Math.max(4, y)}px`;
  }

  // --- following one position -------------------------------------------------------------------
  function entriesText(entries) { return entries.map(([name, , text]) => `${name} = ${text}`).join(", "); }
  function select(t) {
    if (!index.has(t)) return;
    const i = index.get(t);
    document.querySelectorAll(".sel, .read").forEach((node) => node.classList.remove("sel", "read"));
    document.querySelectorAll(`[data-pos="${t}"]`).forEach((node) => node.classList.add("sel"));
    for (const layer of data.layers) {
      const section = document.getElementById(`layer-${layer.number}`);
      const lines = [];
      for (const head of layer.heads) {
        const row = head.pattern[i];
        const reads = columns.map((k, j) => [k, row[j]]).filter(([k, w]) => w !== null && w >= 0.01 && (k === "gap" || k <= t));
        reads.sort((a, b) => b[1] - a[1]);
        const svgNode = section.querySelector(`svg.heatmap[data-head="${head.index}"]`);
        const overlay = svgNode.querySelector("g.overlay");
        overlay.replaceChildren();
        const c = Number(svgNode.dataset.cell), left = Number(svgNode.dataset.left), top = Number(svgNode.dataset.top);
        overlay.append(svg("rect", { class: "row-select", x: left - 1, y: top + i * c, width: columns.length * c + 2, height: c }));
        const described = reads.slice(0, 6).map(([k, w]) => {
          overlay.append(svg("rect", { class: "key-read", x: left + columns.indexOf(k) * c, y: top + i * c, width: c, height: c }));
          if (k === "gap") return `the folded positions (weight ${weightText(w)} in all)`;
          section.querySelectorAll(`table[data-part="attention"] [data-pos="${k}"]`).forEach((node) => node.classList.add("read"));
          const value = head.values[index.get(k)];
          return `${k} '${tokenAt.get(k).name}' (weight ${weightText(w)}${value.length ? "; value reads " + entriesText(value) : ""})`;
        });
        const more = reads.length > 6 ? ` and ${reads.length - 6} more` : "";
        lines.push(`head ${head.index} looks at ${described.join(", ") || "no position with weight ≥ 0.01"}${more}`);
      }
      const written = (part) => layer[part].rows.filter((row) => row.text[i]).map((row) => `${row.name} = ${row.text[i]}`);
      const att = written("attention"), mlp = written("mlp");
      if (!layer.heads.length) lines.push("no heads read anything here");
      lines.push(`attention writes ${att.length ? att.join(", ") : "nothing"}`);
      if (layer.n_units) {
        const inputs = layer.mlp_inputs[i];
        lines.push(`MLP reads this position's ${inputs.length ? entriesText(inputs) : "entries (all zero)"}; writes ${mlp.length ? mlp.join(", ") : "nothing"}`);
      } else {
        lines.push("no MLP units");
      }
      const panel = section.querySelector(".panel");
      panel.replaceChildren(el("b", { text: `Following ${describeToken(t)}:` }), el("ul", {}, lines.map((line) => el("li", { text: line }))));
    }
  }
  function onClick(event) {
    const target = event.target.closest ? event.target.closest("[data-pos], rect[data-q]") : null;
    if (!target) return;
    select(Number(target.dataset.pos !== undefined ? target.dataset.pos : target.dataset.q));
  }

  // --- the page ------------------------------------------------------------------------------------
  app.append(header(), promptSection(), sharesSection());
  for (const layer of data.layers) app.append(layerSection(layer));
  app.append(outputSection());
  app.append(el("footer", {}, `Written by superpose explain${data.command ? ": " + data.command : ""}. `
    + "One self-contained file: the data, this script and its style are inline; nothing is fetched."));
  document.addEventListener("mousemove", showTip);
  document.addEventListener("mouseleave", () => { tooltip.hidden = true; });
  document.addEventListener("click", onClick);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && event.target.dataset && event.target.dataset.pos !== undefined) select(Number(event.target.dataset.pos));
  });
  select(data.outputs.query.t);
  document.body.dataset.ready = "true";
})();
