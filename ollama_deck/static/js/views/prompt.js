// The Prompt tab: a test prompt whose reply streams in as SSE over a POST. Its model
// choice follows the installed list and the active model.

import { API } from "../core/config.js";
import { on } from "../core/events.js";
import { state } from "../core/state.js";
import { $, el, sameModel, setText, show } from "../core/util.js";
import { endSession, readJson, sessionRefusal, withHost } from "../http/http.js";

let chatRunning = null;
let promptPicked = false; // once the user picks a model, refreshes keep their choice

/**
 * Whether a model can answer a prompt: Ollama lists its capabilities (an embedding model
 * has no "completion"); where it does not (older Ollama), the model gets the benefit.
 */
function canChat(model) {
  return !Array.isArray(model.capabilities) || model.capabilities.includes("completion");
}

/** The installed models that can chat, by name. */
function chatNames() {
  return state.models.filter(canChat).map((m) => m.name);
}

function fillPromptModels(preferActive) {
  const select = $("#prompt-model");
  const current = select.value;
  const wanted = state.models.map((m) => [m.name, canChat(m)].join("\t"));
  if (select.dataset.models !== wanted.join("\n")) {
    select.dataset.models = wanted.join("\n");
    select.replaceChildren(...state.models.map((m) => canChat(m)
      ? el("option", { value: m.name, text: m.name })
      : el("option", { value: m.name, disabled: true, text: m.name + " (cannot chat)" })));
  }
  const usable = chatNames();
  const activeName = usable.find((n) => sameModel(n, state.active));
  if (preferActive) promptPicked = false;
  if (promptPicked && usable.includes(current)) select.value = current;
  else if (activeName) select.value = activeName;
  else if (usable.includes(current)) select.value = current;
  else select.value = usable.length ? usable[0] : "";
  $("#prompt-send").disabled = usable.length === 0 || chatRunning !== null;
}

export function initPrompt() {
  on("models-changed", () => fillPromptModels());
  on("active-changed", ({ preferActive }) => fillPromptModels(preferActive));
  $("#prompt-model").addEventListener("change", () => {
    promptPicked = true;
  });
  $("#prompt-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sendPrompt();
  });
  $("#prompt-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      sendPrompt();
    }
  });
  $("#prompt-stop").addEventListener("click", () => chatRunning && chatRunning.abort());
}

async function sendPrompt() {
  if (chatRunning) return;
  const model = $("#prompt-model").value;
  const prompt = $("#prompt-input").value;
  const reply = $("#prompt-reply");
  const stats = $("#prompt-stats");
  const error = $("#prompt-error");
  show(error, false);
  setText(stats, "");
  reply.replaceChildren();
  if (!model || !prompt.trim()) {
    setText(error, !model ? "Pick a model first." : "Write a prompt first.");
    show(error, true);
    return;
  }
  chatRunning = new AbortController();
  $("#prompt-send").disabled = true;
  show($("#prompt-stop"), true);
  reply.classList.add("streaming");
  try {
    const response = await fetch(withHost(API.chat), {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify({ model: model, prompt: prompt }),
      signal: chatRunning.signal,
    });
    const streamed = (response.headers.get("Content-Type") || "").startsWith("text/event-stream");
    if (!response.ok || !streamed) {
      const data = await readJson(response);
      const refusal = sessionRefusal(response, data);
      if (refusal) endSession(refusal);
      let message = response.status + " " + response.statusText;
      if (data && data.error) message = data.error.message || String(data.error);
      else if (response.ok) message = "the server's answer was not an event stream";
      throw new Error(message);
    }
    await readEvents(response.body, (name, data) => {
      if (name === "token") reply.append(document.createTextNode(data.content || ""));
      else if (name === "done") setText(stats, chatStats(data));
      else if (name === "error") {
        setText(error, data.message || "the reply failed");
        show(error, true);
      }
    });
  } catch (err) {
    if (err.name !== "AbortError") {
      setText(error, err.message);
      show(error, true);
    } else {
      setText(stats, "stopped");
    }
  } finally {
    chatRunning = null;
    reply.classList.remove("streaming");
    show($("#prompt-stop"), false);
    $("#prompt-send").disabled = chatNames().length === 0;
  }
}

function chatStats(data) {
  const parts = [];
  if (data.tokens !== undefined) parts.push(data.tokens + " tokens");
  if (data.tokens_per_second) parts.push(data.tokens_per_second + " tokens/s");
  if (data.total_seconds) parts.push(data.total_seconds + " s total");
  if (data.done_reason) parts.push("stop: " + data.done_reason);
  return parts.join(" · ");
}

/** Read an SSE body with a stream reader (EventSource cannot POST); calls on(event, data). */
async function readEvents(body, on) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  const dispatch = (frame) => {
    let name = "message";
    const data = [];
    for (const line of frame.split(/\r?\n/)) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") name = value;
      else if (field === "data") data.push(value);
    }
    if (!data.length) return;
    let parsed;
    try {
      parsed = JSON.parse(data.join("\n"));
    } catch (err) {
      parsed = { content: data.join("\n") };
    }
    on(name, parsed);
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) !== -1) {
      const frame = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      dispatch(frame);
    }
  }
  buffer += decoder.decode();
  if (buffer.trim()) dispatch(buffer);
}
