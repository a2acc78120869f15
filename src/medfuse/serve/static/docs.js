// medfuse API documentation: renders /openapi.json of the server that served it. No external resources.
"use strict";

const METHODS = ["get", "post", "put", "patch", "delete"];
let components = {};

function node(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined && text !== null) element.textContent = text;
  return element;
}

function refName(ref) {
  return ref.split("/").pop();
}

function resolve(schema) {
  return schema && schema.$ref ? components[refName(schema.$ref)] || {} : schema || {};
}

// A schema's type as a line of text and links to named schemas.
function typeNode(schema) {
  const span = node("span", "type");
  if (!schema) return span;
  if (schema.$ref) {
    const link = node("a", "", refName(schema.$ref));
    link.href = `#schema-${refName(schema.$ref)}`;
    span.appendChild(link);
    return span;
  }
  const choices = schema.anyOf || schema.oneOf;
  if (choices) {
    choices.forEach((choice, i) => {
      if (i) span.appendChild(document.createTextNode(" | "));
      span.appendChild(typeNode(choice));
    });
    return span;
  }
  if (schema.type === "array") {
    span.appendChild(document.createTextNode("array of "));
    span.appendChild(typeNode(schema.items));
    return span;
  }
  if (schema.type === "object" && schema.additionalProperties && typeof schema.additionalProperties === "object") {
    span.appendChild(document.createTextNode("object of "));
    span.appendChild(typeNode(schema.additionalProperties));
    return span;
  }
  let text = schema.type || "any";
  if (schema.format) text += ` (${schema.format === "binary" ? "file" : schema.format})`;
  span.appendChild(document.createTextNode(text));
  return span;
}

function limits(schema) {
  const parts = [];
  if (schema.minimum !== undefined) parts.push(`≥ ${schema.minimum}`);
  if (schema.maximum !== undefined) parts.push(`≤ ${schema.maximum}`);
  if (schema.enum) parts.push(`one of ${schema.enum.join(", ")}`);
  if (schema.default !== undefined && schema.default !== null) parts.push(`default ${JSON.stringify(schema.default)}`);
  return parts.join("; ");
}

function fieldTable(rows) {
  const table = node("table", "fields");
  const head = node("tr");
  ["name", "type", "required", "description"].forEach((h) => head.appendChild(node("th", "", h)));
  table.appendChild(head);
  rows.forEach((row) => {
    const tr = node("tr");
    tr.appendChild(node("td", "name", row.name));
    const type = node("td");
    type.appendChild(typeNode(row.schema));
    tr.appendChild(type);
    tr.appendChild(node("td", "", row.required ? "yes" : ""));
    const text = [row.description || (row.schema && row.schema.description) || "", limits(resolve(row.schema))]
      .filter(Boolean).join(" — ");
    tr.appendChild(node("td", "", text));
    table.appendChild(tr);
  });
  return table;
}

function propertiesTable(schema) {
  const resolved = resolve(schema);
  const required = new Set(resolved.required || []);
  const rows = Object.entries(resolved.properties || {}).map(([name, property]) => ({
    name, schema: property, required: required.has(name), description: property.description || property.title,
  }));
  return rows.length ? fieldTable(rows) : null;
}

function renderBody(body) {
  const box = node("div", "part");
  box.appendChild(node("h4", "", "Request body"));
  Object.entries(body.content || {}).forEach(([type, media]) => {
    box.appendChild(node("p", "media", type));
    const table = propertiesTable(media.schema);
    if (table) box.appendChild(table);
    else if (media.schema) box.appendChild(typeNode(media.schema));
  });
  return box;
}

function renderResponses(responses) {
  const box = node("div", "part");
  box.appendChild(node("h4", "", "Responses"));
  const list = node("ul", "responses");
  Object.entries(responses || {}).forEach(([status, response]) => {
    const item = node("li");
    item.appendChild(node("strong", status.startsWith("2") ? "ok" : "fail", status));
    item.appendChild(document.createTextNode(` ${response.description || ""} `));
    Object.entries(response.content || {}).forEach(([type, media]) => {
      item.appendChild(node("span", "media", type));
      if (media.schema) {
        item.appendChild(document.createTextNode(" "));
        item.appendChild(typeNode(media.schema));
      }
    });
    list.appendChild(item);
  });
  box.appendChild(list);
  return box;
}

function renderOperation(path, method, operation) {
  const details = node("details", "endpoint");
  details.id = `${method}-${path}`;
  const summary = node("summary");
  summary.appendChild(node("span", `method ${method}`, method.toUpperCase()));
  summary.appendChild(node("code", "path", path));
  if (operation.summary) summary.appendChild(node("span", "muted", ` ${operation.summary}`));
  details.appendChild(summary);
  if (operation.description) details.appendChild(node("p", "description", operation.description));
  const parameters = operation.parameters || [];
  if (parameters.length) {
    const box = node("div", "part");
    box.appendChild(node("h4", "", "Parameters"));
    box.appendChild(fieldTable(parameters.map((p) => ({
      name: `${p.name} (${p.in})`, schema: p.schema, required: p.required, description: p.description,
    }))));
    details.appendChild(box);
  }
  if (operation.requestBody) details.appendChild(renderBody(operation.requestBody));
  details.appendChild(renderResponses(operation.responses));
  return details;
}

function renderSchemas() {
  const box = document.getElementById("schemas");
  box.replaceChildren();
  Object.keys(components).sort().forEach((name) => {
    const schema = components[name];
    const section = node("div", "schema");
    section.id = `schema-${name}`;
    section.appendChild(node("h3", "", name));
    if (schema.description) section.appendChild(node("p", "description", schema.description));
    const table = propertiesTable(schema);
    if (table) section.appendChild(table);
    box.appendChild(section);
  });
}

function render(spec) {
  components = (spec.components && spec.components.schemas) || {};
  const info = spec.info || {};
  document.getElementById("api-title").textContent = `${info.title || "API"} API`;
  document.getElementById("api-version").textContent = `version ${info.version || "?"} · OpenAPI ${spec.openapi || ""}`;
  document.getElementById("api-description").textContent = info.description || "";
  const box = document.getElementById("endpoints");
  box.replaceChildren();
  Object.entries(spec.paths || {}).forEach(([path, item]) => {
    METHODS.filter((m) => item[m]).forEach((method) => box.appendChild(renderOperation(path, method, item[method])));
  });
  renderSchemas();
}

document.addEventListener("DOMContentLoaded", async () => {
  try {
    const response = await fetch("/openapi.json");
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
  } catch (err) {
    const box = document.getElementById("error");
    box.textContent = `Cannot load the API description: ${err.message}`;
    box.hidden = false;
  }
});
