// lensgraph's web page (docs/api.md, "The web page"): plain JavaScript, no build step, no other origin.
// An image is sent twice to the chosen /v1 route: once for the JSON answer, once with ?render=true for the
// picture of it; each request's latency is measured here with performance.now(). With API keys on, the key
// pasted above is kept in this tab's sessionStorage and sent as "Authorization: Bearer <key>".
"use strict";

(() => {
  const KEY_STORAGE = "lensgraph.apiKey";
  const $ = (id) => document.getElementById(id);
  const state = { file: null, previewUrl: null, renderedUrl: null, run: 0, modelsLoad: 0 };

  // -- the API key ---------------------------------------------------------------------------------
  function apiKey() {
    try {
      return sessionStorage.getItem(KEY_STORAGE) || "";
    } catch (e) {
      return "";
    }
  }

  function setApiKey(value) {
    try {
      if (value) sessionStorage.setItem(KEY_STORAGE, value);
      else sessionStorage.removeItem(KEY_STORAGE);
    } catch (e) {
      // storage refused (private mode): the key then lasts as long as the field's value
    }
    showKeyState();
  }

  function showKeyState() {
    $("key-state").textContent = apiKey() ? "sent with every request (kept in this tab only)" : "";
  }

  function headers(extra) {
    const result = new Headers(extra || {});
    const key = apiKey() || $("api-key").value.trim();
    if (key) result.set("Authorization", "Bearer " + key);
    return result;
  }

  // -- calls and their errors ----------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, code, message, hint) {
      super(message);
      this.status = status;
      this.code = code;
      this.hint = hint;
    }
  }

  const HINTS = {
    401: "Paste an API key in the field above.",
    403: "This key is not valid for this service: check it or paste another.",
  };

  // The API's errors are JSON {error, message, detail}; /v2's are {error}; anything else is shown as text.
  async function failure(response) {
    const text = await response.text();
    let code = "";
    let message = text.trim().slice(0, 500) || response.statusText || "no message";
    try {
      const body = JSON.parse(text);
      if (body && typeof body === "object") {
        if (typeof body.message === "string") {
          code = String(body.error || "");
          message = body.message;
        } else if (typeof body.error === "string") {
          message = body.error;
        } else if (body.detail !== undefined) {
          message = JSON.stringify(body.detail);
        }
      }
    } catch (e) {
      // not JSON: keep the text
    }
    let hint = HINTS[response.status] || "";
    const retry = response.headers.get("Retry-After");
    if (retry && (response.status === 429 || response.status === 503)) hint = `Retry after ${retry} s.`;
    return new ApiError(response.status, code, message, hint);
  }

  async function call(path, init) {
    let response;
    try {
      response = await fetch(path, { cache: "no-store", ...init });
    } catch (e) {
      throw new ApiError(0, "", `the service did not answer (${e.message})`, "Is it running? Reload the page.");
    }
    if (!response.ok) throw await failure(response);
    return response;
  }

  function describe(error) {
    if (error instanceof ApiError) {
      const head = error.status ? `${error.status}${error.code ? " " + error.code : ""}: ` : "";
      return { text: head + error.message, hint: error.hint };
    }
    return { text: String(error && error.message ? error.message : error), hint: "" };
  }

  function showError(box, error) {
    const { text, hint } = describe(error);
    box.replaceChildren(element("strong", "", text));
    if (hint) box.append(" ", element("span", "hint", hint));
    box.hidden = false;
  }

  // -- small DOM helpers ---------------------------------------------------------------------------
  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  const ms = (value) => `${Math.round(value)} ms`;
  const percent = (value) => `${(100 * value).toFixed(1)}%`;
  const score = (value) => Number(value).toFixed(2);

  // -- running a task ------------------------------------------------------------------------------
  function task() {
    return document.querySelector('input[name="task"]:checked').value;
  }

  function upload() {
    const form = new FormData();
    form.append("file", state.file, state.file.name || "image");
    return form;
  }

  function setStatus(text) {
    $("status").textContent = text;
  }

  function clearResult() {
    $("error").hidden = true;
    $("summary").replaceChildren();
    $("summary").removeAttribute("data-count");
    $("latency").hidden = true;
    $("rendered").hidden = true;
    $("json-box").hidden = true;
  }

  async function run() {
    if (!state.file) return;
    const route = task();
    const id = ++state.run;
    const current = () => id === state.run; // a newer run (another image or task) replaces this one
    clearResult();
    $("result").dataset.state = "running";
    setStatus(`${route}: sending ${state.file.name || "the image"}...`);
    try {
      const start = performance.now();
      const answer = await call(`v1/${route}`, {
        method: "POST", headers: headers({ Accept: "application/json" }), body: upload(),
      });
      const body = await answer.json();
      const jsonMs = performance.now() - start;
      if (!current()) return;
      showSummary(route, body);
      $("json").textContent = JSON.stringify(body, null, 2);
      $("json-box").hidden = false;
      showLatency(jsonMs, null);
      setStatus(`${route}: drawing the answer...`);

      const again = performance.now();
      const picture = await call(`v1/${route}?render=true`, {
        method: "POST", headers: headers({ Accept: "image/jpeg" }), body: upload(),
      });
      const blob = await picture.blob();
      const pictureMs = performance.now() - again;
      if (!current()) return;
      await showPicture(blob);
      if (!current()) return;
      showLatency(jsonMs, pictureMs);
      setStatus(`${route}: done`);
      $("result").dataset.state = "done";
    } catch (error) {
      if (!current()) return;
      showError($("error"), error);
      setStatus(`${route}: failed`);
      $("result").dataset.state = "error";
    }
  }

  function showLatency(jsonMs, pictureMs) {
    $("latency-json").textContent = ms(jsonMs);
    $("latency-picture").textContent = pictureMs === null ? "..." : ms(pictureMs);
    $("latency").hidden = false;
  }

  async function showPicture(blob) {
    const image = $("rendered");
    if (state.renderedUrl) URL.revokeObjectURL(state.renderedUrl);
    state.renderedUrl = URL.createObjectURL(blob);
    image.src = state.renderedUrl;
    image.hidden = false;
    await image.decode();
  }

  function counted(count, noun, plural) {
    const line = element("p", "count");
    line.append(element("strong", "", String(count)), ` ${count === 1 ? noun : plural}`);
    const summary = $("summary");
    summary.dataset.count = String(count);
    summary.append(line);
  }

  function list(items) {
    const out = element("ol");
    for (const text of items) out.append(element("li", "", text));
    $("summary").append(out);
  }

  function showSummary(route, body) {
    const summary = $("summary");
    if (route === "faces") {
      const faces = body.faces || [];
      counted(faces.length, "face", "faces");
      list(faces.slice(0, 10).map((f, i) => `face ${i + 1}: score ${score(f.score)}, ` +
        `${Math.round(f.box.x2 - f.box.x1)}x${Math.round(f.box.y2 - f.box.y1)} px`));
      if (body.search && body.search.warning) summary.append(element("p", "muted", body.search.warning));
    } else if (route === "detect") {
      const found = body.detections || [];
      counted(found.length, "object", "objects");
      list(found.slice(0, 10).map((d) => `${d.label}: ${score(d.score)}`));
    } else if (route === "classify") {
      list((body.predictions || []).map((p) => `${p.label}: ${percent(p.confidence)}`));
    } else if (route === "digits") {
      const line = element("p", "count");
      if (body.digit === null || body.digit === undefined) {
        line.append(element("strong", "", "no digit"), body.blank ? ": the image has no readable ink" : "");
      } else {
        line.append("digit ", element("strong", "", String(body.digit)), `, probability ${score(body.probability)}, `,
          element("span", body.reliable ? "good" : "bad",
            body.reliable ? "reliable" : `not reliable (${body.reason || "uncertain"})`));
      }
      summary.append(line);
    }
    const model = body.model || (body.models && body.models[0]);
    if (model && model.name) {
      summary.append(element("p", "muted", `model ${model.name} v${model.version}` +
        (model.weights_real === false ? " (random weights)" : "")));
    }
  }

  // -- choosing an image ---------------------------------------------------------------------------
  function choose(file) {
    if (!file) return;
    state.file = file;
    if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
    state.previewUrl = URL.createObjectURL(file);
    const preview = $("preview");
    preview.src = state.previewUrl;
    preview.hidden = false;
    $("drop-hint").hidden = true;
    $("file-name").textContent = `${file.name} (${Math.max(1, Math.round(file.size / 1024))} KB)`;
    $("run").disabled = false;
    run();
  }

  function wireDrop() {
    const zone = $("drop");
    for (const name of ["dragenter", "dragover"]) {
      zone.addEventListener(name, (event) => {
        event.preventDefault();
        zone.classList.add("over");
      });
    }
    for (const name of ["dragleave", "dragend"]) zone.addEventListener(name, () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("over");
      choose(event.dataTransfer && event.dataTransfer.files[0]);
    });
    zone.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        $("file").click();
      }
    });
    $("file").addEventListener("change", () => choose($("file").files[0]));
    // dropping outside the zone must not navigate away from the page
    window.addEventListener("dragover", (event) => event.preventDefault());
    window.addEventListener("drop", (event) => event.preventDefault());
  }

  // -- the models panel ----------------------------------------------------------------------------
  async function loadModels() {
    const body = $("models-body");
    const problem = $("models-error");
    const id = ++state.modelsLoad; // only the latest load (e.g. after a new key) fills the panel
    problem.hidden = true;
    body.replaceChildren(row(["loading..."]));
    let models;
    try {
      models = (await (await call("v1/models", { headers: headers() })).json()).models || [];
    } catch (error) {
      if (id !== state.modelsLoad) return;
      body.replaceChildren();
      showError(problem, error);
      return;
    }
    if (id !== state.modelsLoad) return;
    body.replaceChildren(...models.map(modelRow));
    const detect = models.some((m) => m.status === "available" && m.info && m.info.task === "detection");
    $("task-detect").hidden = !detect;
    if (!detect && task() === "detect") document.querySelector('input[value="faces"]').checked = true;
  }

  function row(cells) {
    const tr = element("tr");
    for (const cell of cells) tr.append(cell instanceof Node ? cell : element("td", "", cell));
    return tr;
  }

  function modelRow(model) {
    const info = model.info || {};
    const available = model.status === "available";
    const status = element("td", available ? "good" : "bad", model.status);
    if (!available && model.reason) {
      status.title = model.reason;
      status.append(element("div", "reason", model.reason));
    }
    const weights = info.weights || {};
    const real = weights.real === true ? "real" : weights.real === false ? "random" : "";
    const cell = element("td", weights.real === false ? "bad" : "", real);
    if (weights.source) cell.title = weights.source;
    const kind = (info.task || "").replace(/_/g, " "); // "face detection": wraps in a narrow panel
    const tr = row([model.name, status, info.version === undefined ? "" : String(info.version), cell, kind]);
    tr.dataset.model = model.name;
    return tr;
  }

  // -- start ---------------------------------------------------------------------------------------
  function start() {
    const field = $("api-key");
    field.value = apiKey();
    showKeyState();
    field.addEventListener("change", () => {
      setApiKey(field.value.trim());
      loadModels();
    });
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      setApiKey(field.value.trim());
      loadModels();
    });
    $("key-forget").addEventListener("click", () => {
      field.value = "";
      setApiKey("");
      loadModels();
    });
    for (const radio of document.querySelectorAll('input[name="task"]')) radio.addEventListener("change", run);
    $("run").addEventListener("click", run);
    $("models-refresh").addEventListener("click", loadModels);
    wireDrop();
    loadModels();
  }

  start();
})();
