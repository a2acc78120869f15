// medfuse clinician page: talks to the /v1 API of the server that served it. No external resources.
"use strict";

// Loaded after api.js ($, api, streamApi, showError).
const state = { info: null, file: null, objectUrl: null, audio: null, video: null, mediaUrls: {}, frames: [] };

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function percent(p) {
  return `${(100 * p).toFixed(1)}%`;
}

// ------------------------------------------------------------------ set-up from /v1/info
async function loadInfo() {
  try {
    state.info = await api("/v1/info");
  } catch (err) {
    showError(`Cannot load the model description: ${err.message}`);
    return;
  }
  showError("");
  $("key-form").hidden = true;
  const { model, endpoints, index } = state.info;
  $("model-name").textContent = (model.card && model.card.name) || `${model.kind} model`;
  const badges = $("model-badges");
  badges.replaceChildren();
  [model.kind, model.task, model.device, index ? `index: ${index.count} cases` : null]
    .filter(Boolean)
    .forEach((text) => badges.appendChild(element("span", "badge", text)));
  if (model.card && model.card.intended_use) {
    $("notice").textContent = `${model.card.intended_use} Research use only: not a medical device.`;
  }
  $("text-block").hidden = !(model.inputs.text && model.kind !== "vqa");
  $("audio-block").hidden = !model.inputs.audio;
  $("video-block").hidden = !model.inputs.video;
  buildVitals(model.vitals || []);
  $("explain").parentElement.hidden = !model.explain;
  $("qa-section").hidden = !endpoints.answer;
  $("report-section").hidden = !endpoints.report;
  $("classify").disabled = !endpoints.classify;
  if (!endpoints.classify) {
    $("results-empty").textContent = "This model does not classify; use the question box.";
  }
}

function buildVitals(names) {
  const box = $("vitals");
  box.replaceChildren();
  $("vitals-block").hidden = names.length === 0;
  names.forEach((name) => {
    const label = element("label", "vital");
    label.appendChild(element("span", "", name.replace(/_/g, " ")));
    const input = element("input");
    input.type = "number";
    input.step = "any";
    input.name = name;
    input.dataset.vital = name;
    label.appendChild(input);
    box.appendChild(label);
  });
}

function vitalsJson() {
  const values = {};
  let bad = null;
  document.querySelectorAll("[data-vital]").forEach((input) => {
    const raw = input.value.trim();
    if (!raw) return;
    const number = Number(raw);
    if (!Number.isFinite(number)) bad = input.dataset.vital;
    values[input.dataset.vital] = number;
  });
  if (bad) throw new Error(`${bad.replace(/_/g, " ")} must be a number`);
  return Object.keys(values).length ? JSON.stringify(values) : null;
}

// ------------------------------------------------------------------ file choice
function isDicom(file) {
  return /\.(dcm|dicom)$/i.test(file.name) || file.type === "application/dicom";
}

function chooseFile(file) {
  if (!file) return;
  state.file = file;
  if (state.objectUrl) URL.revokeObjectURL(state.objectUrl);
  const preview = $("preview");
  if (isDicom(file)) {
    state.objectUrl = null;
    preview.hidden = true;
    $("file-info").textContent = `DICOM file, ${Math.ceil(file.size / 1024)} KB (shown after classification)`;
  } else {
    state.objectUrl = URL.createObjectURL(file);
    preview.src = state.objectUrl;
    preview.hidden = false;
    $("file-info").textContent = `${file.type || "image"}, ${Math.ceil(file.size / 1024)} KB`;
  }
  $("drop-help").hidden = !preview.hidden;
  showError("");
}

function setUpDrop() {
  const drop = $("drop");
  const input = $("file");
  drop.addEventListener("click", () => input.click());
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") input.click();
  });
  input.addEventListener("change", () => chooseFile(input.files[0]));
  ["dragenter", "dragover"].forEach((kind) => drop.addEventListener(kind, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((kind) => drop.addEventListener(kind, (event) => {
    event.preventDefault();
    drop.classList.remove("over");
  }));
  drop.addEventListener("drop", (event) => chooseFile(event.dataTransfer.files[0]));
}

// ------------------------------------------------------------------ results
function renderProbabilities(result) {
  const box = $("probabilities");
  box.replaceChildren();
  const thresholds = result.thresholds || {};
  const chosen = new Set(result.predictions || []);
  Object.entries(result.probabilities || {}).forEach(([label, p]) => {
    const row = element("div", chosen.has(label) ? "bar-row positive" : "bar-row");
    row.appendChild(element("span", "bar-label", label));
    const track = element("div", "bar-track");
    track.setAttribute("role", "meter");
    track.setAttribute("aria-label", label);
    track.setAttribute("aria-valuemin", "0");
    track.setAttribute("aria-valuemax", "1");
    track.setAttribute("aria-valuenow", String(p));
    const fill = element("div", "bar");
    fill.style.width = percent(p);
    track.appendChild(fill);
    if (label in thresholds) {
      const tick = element("div", "threshold");
      tick.style.left = percent(thresholds[label]);
      tick.title = `threshold ${percent(thresholds[label])}`;
      track.appendChild(tick);
    }
    row.appendChild(track);
    row.appendChild(element("span", "bar-value", percent(p)));
    box.appendChild(row);
  });
  const names = result.predictions || [];
  $("predicted").textContent = names.length ? `Predicted: ${names.join(", ")}` :
    (result.prediction ? `Predicted: ${result.prediction}` : "No finding above its threshold.");
  $("calibration").textContent = result.calibration ? result.calibration.note : "";
}

function renderPictures(result) {
  const view = result.image_png;
  $("model-view-figure").hidden = !view;
  if (view) $("model-view").src = `data:image/png;base64,${view}`;
  if (view && state.file && isDicom(state.file)) {
    $("preview").src = `data:image/png;base64,${view}`;
    $("preview").hidden = false;
    $("drop-help").hidden = true;
  }
  const explanation = result.explanation;
  const ok = explanation && explanation.available;
  $("overlay-figure").hidden = !ok;
  if (ok) {
    $("overlay").src = `data:image/png;base64,${explanation.overlay_png}`;
    $("overlay-caption").textContent = `${explanation.method}: ${explanation.target} (${percent(explanation.probability)})`;
  }
  $("explain-note").textContent = explanation && !explanation.available ? explanation.reason : "";
  const dicom = result.inputs && result.inputs.dicom;
  if (dicom) {
    $("file-info").textContent = `DICOM ${dicom.modality || ""} ${dicom.columns}×${dicom.rows}`;
  }
}

function renderCases(hits) {
  const list = $("similar");
  list.replaceChildren();
  hits.forEach((hit) => {
    const item = element("li", "case");
    if (hit.thumbnail_png) {
      const img = element("img");
      img.src = `data:image/png;base64,${hit.thumbnail_png}`;
      img.alt = `case ${hit.case_id}`;
      item.appendChild(img);
    }
    const body = element("div", "case-body");
    const head = element("p", "case-head");
    head.appendChild(element("strong", "", `Case ${hit.case_id}`));
    head.appendChild(element("span", "muted", ` similarity ${hit.score.toFixed(3)}`));
    body.appendChild(head);
    if (hit.labels && hit.labels.length) body.appendChild(element("p", "case-labels", hit.labels.join(", ")));
    if (hit.text) body.appendChild(element("p", "case-text", hit.text));
    item.appendChild(body);
    list.appendChild(item);
  });
}

function imageForm() {
  const form = new FormData();
  if (state.file) form.append("image", state.file, isDicom(state.file) ? "upload.dcm" : "upload");
  return form;
}

async function similarCases() {
  const index = state.info && state.info.index;
  if (!index || !state.file || !index.queries.includes("image")) {
    $("similar-section").hidden = true;
    return;
  }
  const form = imageForm();
  form.append("k", "5");
  form.append("thumbnails", "true");
  const data = await api("/v1/retrieve", form);
  $("similar-section").hidden = false;
  renderCases(data.hits);
}

async function classify() {
  if (!state.file && !state.audio && !state.video) {
    const model = state.info ? state.info.model : null;
    const media = model && (model.inputs.audio || model.inputs.video);
    showError(media ? "Choose an image, a recording or a clip first." : "Choose an image first.");
    return;
  }
  showError("");
  const form = imageForm();
  if (state.audio && !$("audio-block").hidden) form.append("audio", state.audio, "upload");
  if (state.video && !$("video-block").hidden) form.append("video", state.video, isDicom(state.video) ? "upload.dcm" : "upload");
  try {
    const text = $("report").value.trim();
    if (text && !$("text-block").hidden) form.append("text", text);
    const vitals = vitalsJson();
    if (vitals) form.append("vitals", vitals);
  } catch (err) {
    showError(err.message);
    return;
  }
  form.append("explain", $("explain").checked && !$("explain").parentElement.hidden ? "true" : "false");
  form.append("preview", "true");
  $("busy").hidden = false;
  $("classify").disabled = true;
  try {
    const result = await api("/v1/classify", form);
    $("results-empty").hidden = true;
    renderProbabilities(result);
    renderPictures(result);
    renderFrames(result);
    await similarCases();
  } catch (err) {
    showError(err.message);
  } finally {
    $("busy").hidden = true;
    $("classify").disabled = false;
  }
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  const form = imageForm();
  form.append("question", question);
  const box = $("answer");
  box.textContent = "Thinking…";
  showError("");
  try {
    let data;
    if (streams()) {
      let text = "";
      box.classList.add("streaming");
      data = await streamApi("/v1/answer/stream", form, (piece) => {
        text += piece;
        box.textContent = text;
      });
    } else {
      data = await api("/v1/answer", form);
    }
    const extra = data.candidates ? ` (${percent(data.candidates[data.answer] || 0)})` : "";
    box.textContent = `${data.answer}${extra}`;
  } catch (err) {
    box.textContent = "";
    showError(err.message);
  } finally {
    box.classList.remove("streaming");
  }
}

// A generator writes answers and drafts token by token: read them from the streaming endpoints.
function streams() {
  return Boolean(state.info && state.info.model && state.info.model.generator);
}

async function draft() {
  if (!state.file) {
    showError("Choose an image first.");
    return;
  }
  const form = imageForm();
  const text = $("report").value.trim();
  if (text && streams()) form.append("text", text);
  const area = $("draft-text");
  $("draft-note").textContent = "Drafting…";
  $("draft").disabled = true;
  showError("");
  try {
    let data;
    if (streams()) {
      area.value = "";
      area.hidden = false;
      data = await streamApi("/v1/report/stream", form, (piece) => {
        area.value += piece;
        area.scrollTop = area.scrollHeight;
      });
    } else {
      data = await api("/v1/report", form);
    }
    area.value = data.draft;
    area.hidden = false;
    $("draft-note").textContent = data.note;
  } catch (err) {
    $("draft-note").textContent = "";
    showError(err.message);
  } finally {
    $("draft").disabled = false;
  }
}

function setUpKey() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("medfuse-api-key", $("api-key").value);
    loadInfo();
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setUpDrop();
  setUpMedia();
  setUpKey();
  $("classify").addEventListener("click", classify);
  $("qa-form").addEventListener("submit", ask);
  $("draft").addEventListener("click", draft);
  loadInfo();
});
