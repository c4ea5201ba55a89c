// The page of `ttmr serve`: search the catalog by text, by a dropped file or by a result
// ("more like this"), and listen to the results. No build step, nothing fetched from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);

function showStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function formatDuration(seconds) {
  const whole = Math.round(seconds);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

// Calls the API; a 401 shows the key form, any error shows the server's message.
async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) {
    $("key").hidden = false;
    $("key-value").focus();
  }
  if (!response.ok) {
    throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
  }
  return body;
}

function resultItem(hit, rank) {
  const item = document.createElement("li");
  item.dataset.trackId = hit.id;
  const number = document.createElement("span");
  number.className = "rank";
  number.textContent = rank;
  const text = document.createElement("div");
  const name = document.createElement("div");
  name.className = "name";
  name.textContent = hit.name;
  name.id = `name-${hit.id}`;
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = `score ${hit.score.toFixed(4)} · ${formatDuration(hit.duration)}`;
  text.append(name, meta);
  const more = document.createElement("button");
  more.type = "button";
  more.className = "more";
  more.textContent = "More like this";
  more.setAttribute("aria-label", `More like ${hit.name}`);
  more.addEventListener("click", () => search({ id: hit.id }, `tracks like ${hit.name}`));
  const player = document.createElement("audio");
  player.controls = true;
  player.preload = "metadata";
  player.src = `/v1/tracks/${hit.id}/audio`;
  player.setAttribute("aria-labelledby", name.id);
  item.append(number, text, more, player);
  return item;
}

function showResults(results, what) {
  const list = $("results");
  list.replaceChildren(...results.map((hit, index) => resultItem(hit, index + 1)));
  showStatus(`${results.length} result${results.length === 1 ? "" : "s"} for ${what}`);
}

function k() {
  return Number($("k").value) || 10;
}

// A JSON search: {text}, {id} or {vector}.
async function search(query, what) {
  showStatus(`Searching for ${what}…`);
  try {
    const body = await api("/v1/search", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...query, k: k() }),
    });
    showResults(body.results, what);
  } catch (error) {
    showStatus(error.message, true);
  }
}

async function searchFile(file) {
  showStatus(`Listening to ${file.name}…`);
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("k", String(k()));
  try {
    const body = await api("/v1/search", { method: "POST", body: form });
    showResults(body.results, `tracks like ${file.name}`);
  } catch (error) {
    showStatus(error.message, true);
  }
}

function searchText(text) {
  const url = new URL(window.location);
  url.searchParams.set("q", text);
  history.replaceState(null, "", url);
  return search({ text }, `“${text}”`);
}

async function showModel() {
  try {
    const model = await api("/v1/model");
    const catalog = model.catalog === null ? "no catalog" : `${model.catalog} tracks`;
    $("model").textContent =
      `${model.title} · ${model.family} · ${model.precision} on ${model.backend} · ${catalog}`;
  } catch (error) {
    $("model").textContent = `Model: ${error.message}`;
  }
}

function setUp() {
  $("search").addEventListener("submit", (event) => {
    event.preventDefault();
    searchText($("q").value);
  });
  $("key").addEventListener("submit", (event) => {
    event.preventDefault();
    document.cookie = `ttmr_key=${encodeURIComponent($("key-value").value)}; path=/; SameSite=Strict`;
    $("key").hidden = true;
    showModel();
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) searchFile(file);
  });
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      $("file").click();
    }
  });
  $("file").addEventListener("change", () => {
    if ($("file").files[0]) searchFile($("file").files[0]);
  });
  showModel();
  const q = new URLSearchParams(window.location.search).get("q");
  if (q) {
    $("q").value = q;
    searchText(q);
  }
}

setUp();
