// attrib console: one small script, no build step. It calls the JSON API with the API key kept in
// sessionStorage and writes data with textContent only (never as HTML).
"use strict";

const KEY = "attrib-api-key";
const $ = (id) => document.getElementById(id);
const FINISHED = new Set(["done", "failed"]);
let me = null;  // the signed-in key: {id, name, scope, rights_holder}

// ---------- talking to the API, errors in plain words ----------

class ApiError extends Error {}

function plainWords(status, problem) {
  const detail = (problem && problem.detail) || "";
  switch (status) {
    case 401: return "Your API key was not accepted (it is unknown or revoked). Please sign in again.";
    case 403: return "Your key is not allowed to do this. " + detail;
    case 404: return "Not found: " + (detail || "it may have been deleted.");
    case 409: return detail || "This cannot be done in the current state.";
    case 413: return "Too large: " + detail;
    case 415: return "That file type is not supported: " + detail;
    case 422: return "Please check the input: " + detail;
    case 429: return "Too many requests. Wait a moment and try again.";
    case 503: return "The service is temporarily unavailable (" + detail + "). Try again shortly.";
    default: return (problem && problem.title ? problem.title + ": " : "Something went wrong: ") + detail;
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + sessionStorage.getItem(KEY) }, options.headers || {});
  let response;
  try {
    response = await fetch(path, Object.assign({}, options, { headers }));
  } catch (e) {
    throw new ApiError("The server could not be reached. Check your connection and try again.");
  }
  if (response.status === 401 && document.body.dataset.page !== "signin") {
    sessionStorage.removeItem(KEY);
  }
  if (!response.ok) {
    let problem = null;
    try { problem = await response.json(); } catch (e) { /* not JSON */ }
    throw new ApiError(plainWords(response.status, problem));
  }
  return response;
}

const getJson = async (path) => (await api(path)).json();

async function thumbnailInto(img, url) {
  // <img src> cannot send the key, so fetch the JPEG and show it from a blob URL.
  if (!url) return;
  try {
    const blob = await (await api(url)).blob();
    img.src = URL.createObjectURL(blob);
  } catch (e) { img.alt = img.alt + " (not available)"; }
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function say(message) { $("status").textContent = message; }

async function guarded(action) {
  showError("");
  try { await action(); } catch (e) { say(""); showError(e instanceof ApiError ? e.message : "Unexpected error: " + e); }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const percent = (x) => (100 * x).toFixed(1) + "%";
const canJudge = () => me && (me.scope === "admin" || me.scope === "reviewer");

// ---------- sign in ----------

async function startSession() {
  if (!sessionStorage.getItem(KEY)) {
    location.assign("/console/signin?next=" + encodeURIComponent(location.pathname));
    return false;
  }
  try { me = await getJson("/console/session"); } catch (e) {
    sessionStorage.removeItem(KEY);
    location.assign("/console/signin?next=" + encodeURIComponent(location.pathname));
    return false;
  }
  $("who").textContent = `${me.name} (${me.scope}${me.rights_holder ? ", " + me.rights_holder : ""})`;
  $("signout").hidden = false;
  document.querySelectorAll("nav a[data-scopes]").forEach((a) => {
    a.hidden = !a.dataset.scopes.split(" ").includes(me.scope);
  });
  return true;
}

function initSignin() {
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(async () => {
      sessionStorage.setItem(KEY, $("api-key").value.trim());
      try { me = await getJson("/console/session"); } catch (e) { sessionStorage.removeItem(KEY); throw e; }
      const next = new URLSearchParams(location.search).get("next");
      const home = { admin: "/console/attribute", attributor: "/console/attribute", registrar: "/console/works",
                     reviewer: "/console/jobs" }[me.scope];
      location.assign(next && next.startsWith("/console/") && next !== "/console/signin" ? next : home);
    });
  });
}

// ---------- attribute and watch a job ----------

function initAttribute() {
  const zone = $("dropzone"), input = $("query-file");
  ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.remove("over"); }));
  zone.addEventListener("drop", (e) => { if (e.dataTransfer.files.length) { input.files = e.dataTransfer.files; submitQuery(); } });
  $("attribute-form").addEventListener("submit", (e) => { e.preventDefault(); submitQuery(); });
}

function submitQuery() {
  guarded(async () => {
    const file = $("query-file").files[0];
    if (!file) throw new ApiError("Choose an image first.");
    const form = new FormData();
    form.append("image", file);
    say("Uploading…");
    const params = $("allow-training").checked ? "?allow_training=true" : "";
    const job = await (await api("/attribute" + params, { method: "POST", body: form })).json();
    history.replaceState(null, "", "/console/jobs/" + job.id);
    await watchJob(job.id);
  });
}

async function watchJob(jobId) {
  // GET ?wait=N long-polls where the server supports it; otherwise it answers at once and we back off.
  let delay = 250, job;
  for (;;) {
    job = await getJson(`/attribute/${jobId}?wait=20`);
    say(`Job ${job.status}…`);
    if (FINISHED.has(job.status)) break;
    await sleep(delay);
    delay = Math.min(delay * 1.6, 2000);
  }
  if (job.status === "failed") throw new ApiError("The job failed: " + (job.error || "no reason given"));
  say(`Done: ${job.matches.length} works ranked.`);
  await renderResult(job);
}

async function renderResult(job) {
  $("result").hidden = false;
  thumbnailInto($("query-thumb"), job.query_thumbnail_url);
  $("job-meta").textContent = `Job ${job.id} · encoder ${job.encoder_id} · ${job.index_size} images searched`;
  const list = $("matches");
  list.replaceChildren();
  const template = $("match-template");
  for (const match of job.matches) list.append(matchItem(template, job, match));
  $("unattributed").textContent = percent(job.unattributed);
  $("unattributed-bar").style.width = percent(job.unattributed);
  const none = $("none-of-these");
  none.hidden = !canJudge();
  none.onclick = () => giveVerdict(job.id, null, "none_of_these", none);
  if (canJudge()) await showVerdicts(job.id);
}

function matchItem(template, job, match) {
  const item = template.content.firstElementChild.cloneNode(true);
  item.dataset.workId = match.work_id;
  item.querySelector(".title").textContent = `${match.rank}. ${match.title}`;
  item.querySelector(".holder").textContent = match.rights_holder;
  const evidence = [match.external_ref && "ref " + match.external_ref, match.licence && "licence " + match.licence];
  item.querySelector(".evidence").textContent = evidence.filter(Boolean).join(" · ");
  item.querySelector(".share-bar").style.width = percent(match.share);
  item.querySelector(".numbers").textContent = `share ${percent(match.share)} · score ${match.score.toFixed(3)}`;
  const img = item.querySelector(".thumb");
  img.alt = `Closest image of ${match.title}`;
  thumbnailInto(img, match.thumbnail_url);
  const row = item.querySelector(".verdict-row");
  row.setAttribute("aria-label", `Verdict on ${match.title}`);
  row.hidden = !canJudge();
  row.querySelectorAll("button.verdict").forEach((button) => {
    button.onclick = () => giveVerdict(job.id, match.work_id, button.dataset.verdict, button);
  });
  return item;
}

function giveVerdict(jobId, workId, verdict, button) {
  guarded(async () => {
    const body = JSON.stringify(workId ? { verdict, work_id: workId } : { verdict });
    await api(`/attribute/${jobId}/verdicts`, { method: "POST", body, headers: { "Content-Type": "application/json" } });
    say("Verdict recorded.");
    await showVerdicts(jobId);
    button.focus();
  });
}

async function showVerdicts(jobId) {
  const mine = (await getJson(`/attribute/${jobId}/verdicts`)).filter((v) => v.reviewer_key_id === me.id);
  document.querySelectorAll(".verdict").forEach((b) => b.setAttribute("aria-pressed", "false"));
  document.querySelectorAll(".match .verdict-state").forEach((s) => { s.textContent = ""; });
  for (const v of mine) {
    const scope = v.work_id ? document.querySelector(`.match[data-work-id="${v.work_id}"]`) : $("result");
    if (!scope) continue;
    const button = scope.querySelector(`.verdict[data-verdict="${v.verdict}"]`);
    if (button) button.setAttribute("aria-pressed", "true");
    const state = scope.querySelector(".verdict-state");
    const words = { confirm: "You confirmed this work", reject: "You rejected this work" }[v.verdict];
    if (state && words) state.textContent = `${words} at ${new Date(v.created_at).toLocaleTimeString()}`;
  }
}

function initJob() {
  const form = $("job-form");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const id = $("job-id").value.trim();
    history.replaceState(null, "", "/console/jobs/" + id);
    guarded(() => watchJob(id));
  });
  if (document.body.dataset.jobId) guarded(() => watchJob(document.body.dataset.jobId));
}

// ---------- works ----------

function initWorks() {
  $("works-search").addEventListener("submit", (e) => { e.preventDefault(); guarded(loadWorks); });
  guarded(loadWorks);
}

async function loadWorks() {
  const q = $("works-q").value.trim();
  const page = await getJson("/sources?limit=100" + (q ? "&q=" + encodeURIComponent(q) : ""));
  // Filtered here too, so search works whether or not the server filters by `q`.
  const needle = q.toLowerCase();
  const works = page.data.filter((w) => !needle || w.title.toLowerCase().includes(needle)
    || (w.external_ref || "").toLowerCase().includes(needle));
  $("works-count").textContent = `${works.length} works shown`;
  const list = $("works");
  list.replaceChildren(...works.map(workItem));
}

function workItem(work) {
  const item = $("work-template").content.firstElementChild.cloneNode(true);
  item.dataset.workId = work.id;
  item.querySelector(".title").textContent = work.title;
  const details = [work.rights_holder, work.external_ref && "ref " + work.external_ref, work.licence && "licence " + work.licence,
                   "registered " + new Date(work.created_at).toLocaleString()];
  item.querySelector(".details").textContent = details.filter(Boolean).join(" · ");
  const embedded = work.images.filter((i) => i.state === "embedded").length;
  item.querySelector(".state").textContent = work.searchable ? `Searchable: all ${work.images.length} images embedded`
    : `Not yet searchable: ${embedded} of ${work.images.length} images embedded`;
  const images = item.querySelector(".images");
  for (const image of work.images) {
    const li = document.createElement("li"), img = document.createElement("img"), caption = document.createElement("div");
    img.alt = `Image ${image.id} of ${work.title}`;
    caption.textContent = image.state + (image.error ? ": " + image.error : "");
    li.append(img, caption);
    images.append(li);
    thumbnailInto(img, `/sources/${work.id}/images/${image.id}/thumbnail`);
  }
  const button = item.querySelector(".delete");
  button.setAttribute("aria-label", `Delete ${work.title}`);
  button.onclick = () => confirmDelete(work, item, button);
  return item;
}

function confirmDelete(work, item, button) {
  const dialog = $("confirm-delete");
  $("confirm-text").textContent = `“${work.title}” and its ${work.images.length} images will be removed from every result. This cannot be undone.`;
  dialog.onclose = () => {
    if (dialog.returnValue !== "delete") { button.focus(); return; }
    guarded(async () => {
      await api(`/sources/${work.id}`, { method: "DELETE" });
      item.remove();
      say(`Deleted “${work.title}”.`);
      $("main").focus();
    });
  };
  dialog.returnValue = "";
  dialog.showModal();
}

// ---------- register ----------

function initRegister() {
  $("rights-holder-field").hidden = me.scope !== "admin";
  $("rights-holder").required = me.scope === "admin";
  $("register-form").addEventListener("submit", (e) => {
    e.preventDefault();
    guarded(async () => {
      const form = new FormData();
      for (const [field, id] of [["title", "title"], ["external_ref", "external-ref"], ["licence", "licence"], ["rights_holder", "rights-holder"]]) {
        const value = $(id).value.trim();
        if (value) form.append(field, value);
      }
      for (const file of $("images").files) form.append("images", file);
      say("Uploading…");
      const response = await api("/sources", { method: "POST", body: form });
      const work = await response.json();
      say(response.status === 200 ? `These images were already registered as “${work.title}”.`
        : `Registered “${work.title}” with ${work.images.length} images; they are being embedded.`);
      $("register-form").reset();
    });
  });
}

// ---------- admin ----------

function fillList(dl, entries) {
  dl.replaceChildren();
  for (const [name, value] of entries) {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = name;
    dd.textContent = typeof value === "object" && value !== null ? JSON.stringify(value) : String(value ?? "–");
    dl.append(dt, dd);
  }
}

async function loadAdmin() {
  const state = await getJson("/admin/status");
  fillList($("serving"), Object.entries(state.serving));
  fillList($("queue"), Object.entries(state.queue));
  fillList($("counts"), Object.entries(state.counts));
  const rows = state.workers.map((w) => {
    const tr = document.createElement("tr");
    for (const v of [w.worker, (w.queues || []).join(", "), w.encoder_id, w.index_id, w.index_type, w.index_size, w.loaded_from]) {
      const td = document.createElement("td");
      td.textContent = String(v ?? "–");
      tr.append(td);
    }
    return tr;
  });
  if (!rows.length) {
    const tr = document.createElement("tr"), td = document.createElement("td");
    td.colSpan = 7;
    td.textContent = "No worker is running: jobs wait in their queues.";
    tr.append(td);
    rows.push(tr);
  }
  $("workers").replaceChildren(...rows);
  showReportLink(state.serving);
  say("Updated " + new Date().toLocaleTimeString());
}

function showReportLink(serving) {
  const holder = $("report-link");
  if (!serving.report_url) {
    holder.textContent = serving.pair_id ? "This pair's run stored no report." : "";
    return;
  }
  const a = document.createElement("a");
  a.href = "/console/reports/" + encodeURIComponent(serving.pair_id);
  a.textContent = "Open the run report (Recall@K, losses, calibration, examples)";
  holder.replaceChildren(a);
}

// ---------- a run report ----------

async function loadReport() {
  // The page is fetched with the key (a link cannot send it) and shown in a sandboxed frame: no script runs
  // in it, and it inherits this page's policy (inline styles and data: images only).
  const pairId = document.body.dataset.pairId;
  say("Loading the report…");
  const html = await (await api(`/admin/pairs/${encodeURIComponent(pairId)}/report`)).text();
  $("report-frame").srcdoc = html;
  const link = $("report-download");
  link.href = URL.createObjectURL(new Blob([html], { type: "text/html" }));
  link.hidden = false;
  say("");
}

// ---------- start ----------

document.addEventListener("DOMContentLoaded", async () => {
  const page = document.body.dataset.page;
  $("signout").addEventListener("click", () => { sessionStorage.removeItem(KEY); location.assign("/console/signin"); });
  if (page === "signin") { initSignin(); return; }
  if (!(await startSession())) return;
  const init = { attribute: initAttribute, job: initJob, works: initWorks, register: initRegister,
                 admin: () => guarded(loadAdmin), report: () => guarded(loadReport) }[page];
  if (init) init();
});
