// medfuse web pages: requests to the /v1 API of the server that served them, whole or streamed
// (Server-Sent Events read with fetch and a stream reader). No external resources.
"use strict";

const $ = (id) => document.getElementById(id);

function apiKey() {
  return sessionStorage.getItem("medfuse-api-key") || "";
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function headers(extra) {
  const out = Object.assign({}, extra || {});
  if (apiKey()) out["X-API-Key"] = apiKey();
  return out;
}

function failure(error, status) {
  const where = error.field ? ` (${error.field})` : "";
  const err = new Error(`${error.message}${where}`);
  err.status = status;
  return err;
}

async function refusal(response) {
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = null;
  }
  if (response.status === 401) $("key-form").hidden = false;
  return failure(data && data.error ? data.error : { message: `HTTP ${response.status}` }, response.status);
}

async function api(path, body) {
  const response = await fetch(path, { method: body ? "POST" : "GET", body, headers: headers() });
  if (!response.ok) throw await refusal(response);
  return response.json();
}

// POST to a /stream endpoint and read its Server-Sent Events: onPiece(text) for each piece as it arrives;
// returns the body of the final "done" event, throws on an "error" event or a refused request.
async function streamApi(path, body, onPiece) {
  const response = await fetch(path, { method: "POST", body, headers: headers({ Accept: "text/event-stream" }) });
  if (!response.ok) throw await refusal(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let done = null;
  const handle = (block) => {
    let name = "message";
    const data = [];
    block.split("\n").forEach((line) => {
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    });
    if (!data.length) return;
    const payload = JSON.parse(data.join("\n"));
    if (name === "error") throw failure(payload.error || { message: "the stream failed" }, 200);
    if (name === "done") done = payload;
    else onPiece(payload.text || "");
  };
  for (;;) {
    const { value, done: ended } = await reader.read();
    if (value) buffer += decoder.decode(value, { stream: true });
    let cut = buffer.indexOf("\n\n");
    while (cut >= 0) {
      handle(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
      cut = buffer.indexOf("\n\n");
    }
    if (ended) break;
  }
  if (buffer.trim()) handle(buffer);
  if (!done) throw new Error("the answer stream ended early; try again");
  return done;
}
