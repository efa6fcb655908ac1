// The live page: queue overview plus status cards (the seed's ProfileStatusTracker).
// Plain browser JavaScript, no build step. Every card follows its username over
// one multiplexed Server-Sent Events stream (GET /api/status/stream?usernames=...),
// or, where streams do not get through, by ETag polling at the interval the API recommends.
"use strict";

const RECENT_LIMIT = 12;
const OVERVIEW_EVERY_MS = 2000;
// The API's limit for one stream. Browsers open at most 6 HTTP/1.1 connections per
// host and an EventSource holds one for good: one stream for every card.
const MAX_STREAMED = 50;
const STREAM_BACKOFF_MS = 30000; // after the stream fails, poll for a while
const STREAM_REOPEN_MS = 100; // coalesce card changes into one new stream
// A name just followed is likely submitted next: ask as often as its answer may be
// cached (max-age 5 s); errors carry Retry-After.
const DEFAULT_POLL_S = 5;
const MAX_ATTEMPTS = 3; // the seed retries while attempts < 3
const HEARTBEAT_STALE_S = 10;
const STORAGE_KEY = "profile-status:following";
const USERNAME_RE = /^[a-z0-9._]+$/;
const HAS_SSE = typeof EventSource === "function";

// The seed's ProcessingStageTracker.STAGE_DEFINITIONS, for people.
const STAGES = {
  queued: ["Queued", "Waiting in queue for an available worker"],
  starting: ["Starting", "Worker picking up the job and initializing"],
  initializing: ["Initializing", "Setting up Instagram API connections"],
  fetching_profile_data: ["Fetching profile data", "Downloading profile metadata and basic info"],
  analyzing_content: ["Analyzing content", "Processing posts, reels and engagement data"],
  processing_insights: ["Processing insights", "Generating AI insights and recommendations"],
  finalizing: ["Finalizing", "Storing data and completing processing"],
  completed: ["Completed", "Processing finished successfully"],
  failed: ["Failed", "Processing stopped with an error"],
};
const BADGES = { exists: "Ready", NOT_FOUND: "Not found", PENDING: "Pending", PROCESSING: "Processing",
                 COMPLETED: "Completed", FAILED: "Failed" };

const $ = (id) => document.getElementById(id);
const cards = new Map(); // username -> Card
let cardSeq = 0;

// ---------------------------------------------------------------- formatting

const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });
const whole = new Intl.NumberFormat();

function fmtDuration(seconds) {
  if (seconds == null || !isFinite(seconds)) return "–";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

function fmtAgo(ms) {
  const s = Math.round((Date.now() - ms) / 1000);
  return s < 2 ? "just now" : `${fmtDuration(s)} ago`;
}

function fmtClock(iso) {
  const d = new Date(iso);
  return isNaN(d) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
}

function normalizeUsername(raw) {
  let name = String(raw || "").trim();
  if (name.startsWith("@")) name = name.slice(1);
  if (!name.trim()) return { error: "Username is required" };
  if (name.length > 30) return { error: "Username too long (max 30 characters)" };
  if (!USERNAME_RE.test(name.toLowerCase())) return { error: "Invalid characters in username" };
  return { name: name.toLowerCase() };
}

function isTerminal(d) {
  if (!d) return false;
  return d.status === "exists" || d.status === "COMPLETED" || (d.status === "FAILED" && !d.is_retry_eligible);
}

// ---------------------------------------------------------------- cards

class Card {
  constructor(username, followed) {
    this.username = username;
    this.followed = followed;
    this.seq = ++cardSeq;
    this.data = null;
    this.receivedAt = 0; // when `data` arrived: live durations count from here
    this.checkedAt = 0; // when the server last confirmed it (a 304 included)
    this.etag = null;
    this.mode = "idle"; // idle (waiting for its first answer) | sse (on the page's stream) | poll | done
    this.timer = null;
    this.nextPollAt = 0;
    this.problem = null;
    this.history = [];
    this.polls = 0; // shown as data attributes, for the curious and for the browser test
    this.notModified = 0;
    this.removed = false;
    this.el = this.build();
  }

  get url() { return `/api/profile/${encodeURIComponent(this.username)}/status`; }
  get terminal() { return isTerminal(this.data); }
  get invalid() { return this.problem === 400; }

  build() {
    const el = $("card-template").content.firstElementChild.cloneNode(true);
    el.dataset.username = this.username;
    el.querySelector(".username").textContent = "@" + this.username;
    el.querySelector(".username").title = "@" + this.username;
    // The buttons repeat on every card: their names say whose card they act on.
    const pin = el.querySelector(".pin");
    pin.setAttribute("aria-label", `Follow @${this.username}`);
    pin.addEventListener("click", () => follow(this.username));
    const unpin = el.querySelector(".unfollow");
    unpin.setAttribute("aria-label", `Unfollow @${this.username}`);
    unpin.addEventListener("click", () => unfollow(this.username));
    el.querySelector(".progress").setAttribute("aria-label", `Progress of @${this.username}`);
    return el;
  }

  // The transport is chosen by rebalance(): the page's stream, or polling.
  setMode(mode) {
    if (this.mode === mode) return;
    this.mode = mode;
    if (mode !== "poll") this.clearTimer();
    if (mode === "poll" && !this.timer) this.schedule(Math.max(0, (this.nextPollAt - Date.now()) / 1000));
    this.renderTransport();
  }

  // -- ETag polling
  clearTimer() {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
  }

  schedule(seconds) {
    this.clearTimer();
    this.nextPollAt = Date.now() + seconds * 1000;
    this.timer = setTimeout(() => { this.timer = null; this.poll(); }, seconds * 1000);
  }

  async poll() {
    if (this.removed) return;
    const headers = { Accept: "application/json" };
    if (this.etag) headers["If-None-Match"] = this.etag;
    let delay = null;
    try {
      // no-store: we revalidate ourselves; the browser cache would answer for max-age seconds.
      const res = await fetch(this.url, { headers, cache: "no-store" });
      this.el.dataset.polls = String(++this.polls);
      if (res.status === 304) {
        this.el.dataset.notModified = String(++this.notModified);
        this.checkedAt = Date.now();
        delay = this.pollSeconds();
      } else {
        const body = await res.json().catch(() => null);
        if (res.ok && body && body.success) {
          this.etag = res.headers.get("ETag");
          this.problem = null;
          this.apply(body.data);
          delay = this.pollSeconds();
        } else {
          this.showProblem(res.status, body);
          delay = res.status === 400 ? null : Number(res.headers.get("Retry-After")) || DEFAULT_POLL_S;
        }
      }
    } catch {
      this.showProblem(0, null);
      delay = DEFAULT_POLL_S;
    }
    if (this.removed || this.mode !== "poll") return;
    if (delay == null) { this.setMode("done"); return; }
    this.schedule(delay);
    this.renderTransport();
  }

  pollSeconds() {
    const d = this.data;
    if (!d || d.status === "NOT_FOUND") return DEFAULT_POLL_S;
    if (d.recommended_polling_seconds > 0) return d.recommended_polling_seconds;
    if (d.status === "FAILED" && d.is_retry_eligible && d.next_retry_time) {
      // "stop" would miss the retry: look again just after it is due.
      const due = (Date.parse(d.next_retry_time) - Date.now()) / 1000 + 1;
      return Math.min(60, Math.max(2, due));
    }
    return null;
  }

  // -- state
  applyStreamed(data) {
    this.etag = null; // our validator, if any, is older than this answer
    this.apply(data);
  }

  apply(data) {
    this.data = data;
    this.receivedAt = this.checkedAt = Date.now();
    this.problem = null;
    if (this.history[this.history.length - 1] !== data.status) this.history.push(data.status);
    this.render();
    if (this.terminal) { this.setMode("done"); rebalance(); }
  }

  showProblem(status, body) {
    this.problem = status;
    const el = this.el.querySelector(".error-text");
    el.hidden = false;
    el.textContent = status === 0 ? "Network error – retrying"
      : (body && body.detail) || (body && body.data && body.data.message) || `HTTP ${status}`;
    if (status === 400) { this.el.dataset.status = "invalid"; this.el.querySelector(".badge").textContent = "Invalid"; }
  }

  // -- rendering
  render() {
    const d = this.data;
    const el = this.el;
    el.dataset.status = d.status;
    el.dataset.history = this.history.join(" ");
    el.querySelector(".badge").textContent = BADGES[d.status] || d.status;
    const prio = el.querySelector(".priority");
    prio.hidden = !d.priority;
    if (d.priority) { prio.textContent = d.priority; prio.dataset.priority = d.priority; }

    el.querySelector(".meta-text").textContent = this.meta(d);

    const [stageName, stageDesc] = this.stageText(d);
    el.querySelector(".stage-name").textContent = stageName;
    el.querySelector(".stage-desc").textContent = stageDesc;

    const pct = d.status === "exists" ? 100 : Number(d.progress_percentage) || 0;
    const bar = el.querySelector(".progress");
    bar.setAttribute("aria-valuenow", String(pct));
    bar.setAttribute("aria-valuetext", `${pct}%, ${stageName.toLowerCase()}`);
    bar.querySelector(".progress-fill").style.width = `${pct}%`;
    bar.title = `${pct}%`;

    const facts = el.querySelector(".facts");
    facts.replaceChildren();
    for (const [label, value, cls] of this.facts(d)) {
      const dt = document.createElement("dt");
      dt.textContent = label;
      const dd = document.createElement("dd");
      dd.textContent = value;
      if (cls) dd.className = cls;
      facts.append(dt, dd);
    }

    const err = el.querySelector(".error-text");
    err.hidden = !d.error_message;
    err.textContent = d.error_message ? `Error: ${d.error_message}` : "";
    this.renderTransport();
  }

  stageText(d) {
    if (d.status === "exists") return ["Profile ready", d.message || "Processing completed"];
    if (d.status === "NOT_FOUND") return ["Not in the queue", d.recommendation || d.message || ""];
    const stage = STAGES[d.processing_stage];
    if (stage) return stage;
    return [d.processing_stage || d.status, d.message || ""];
  }

  meta(d) {
    const parts = [];
    const attempts = d.attempts || 0;
    if (d.status === "exists") {
      if (d.last_scraped_at) parts.push(`scraped ${fmtClock(d.last_scraped_at)}`);
      return parts.join(" · ");
    }
    if (d.status === "NOT_FOUND") return "never requested";
    if (attempts > 0 || d.status === "FAILED") parts.push(`attempt ${attempts} of ${MAX_ATTEMPTS}`);
    return parts.join(" · ");
  }

  facts(d) {
    const out = [];
    if (d.status === "exists") {
      out.push(["Followers", d.followers_count == null ? "–" : compact.format(d.followers_count)]);
      out.push(["Posts", d.posts_count == null ? "–" : whole.format(d.posts_count)]);
      out.push(["Data", d.data_freshness || "–"]);
      return out;
    }
    if (d.queue_position != null) {
      out.push(["Queue position", `#${whole.format(d.queue_position)} of ${whole.format(d.total_queue_size ?? 0)}`]);
    }
    if (d.status === "PROCESSING") out.push(["Running for", fmtDuration(this.liveDuration()), "live-duration"]);
    if (d.status === "PENDING" || d.status === "PROCESSING") {
      out.push(["ETA", d.estimated_time_remaining || "–"]);
      if (d.timestamp) out.push(["Requested", fmtClock(d.timestamp)]);
    }
    if (d.status === "FAILED") {
      out.push(["Retry", d.is_retry_eligible && d.next_retry_time ? this.retryText() : "no retries left",
                "retry-text"]);
    }
    return out;
  }

  liveDuration() {
    const d = this.data;
    if (!d || d.processing_duration_seconds == null) return null;
    return d.processing_duration_seconds + (Date.now() - this.receivedAt) / 1000;
  }

  retryText() {
    const due = Date.parse(this.data.next_retry_time);
    const s = Math.round((due - Date.now()) / 1000);
    return s > 0 ? `in ${fmtDuration(s)} (${fmtClock(this.data.next_retry_time)})` : "due now";
  }

  renderTransport() {
    const el = this.el;
    el.dataset.mode = this.mode;
    el.querySelector(".pin").hidden = this.followed;
    el.querySelector(".unfollow").hidden = !this.followed;
    let text;
    let title = "";
    if (this.mode === "sse") {
      text = "● live";
      title = "Server-Sent Events: the API pushes every change, one stream for every card";
    } else if (this.mode === "done") {
      text = this.invalid ? "not followed" : "final state";
    } else if (this.mode === "poll" && this.timer) {
      const s = Math.max(0, Math.ceil((this.nextPollAt - Date.now()) / 1000));
      text = `polling · next in ${s} s`;
      title = `ETag polling at the interval the API recommends; last checked ${fmtAgo(this.checkedAt)}`;
    } else {
      text = "checking…";
    }
    const transport = el.querySelector(".transport");
    transport.textContent = text;
    transport.title = title;
  }

  tick() {
    if (!this.data) return;
    if (this.data.status === "PROCESSING") {
      const dd = this.el.querySelector(".live-duration");
      if (dd) dd.textContent = fmtDuration(this.liveDuration());
    }
    if (this.data.status === "FAILED" && this.data.is_retry_eligible) {
      const dd = this.el.querySelector(".retry-text");
      if (dd) dd.textContent = this.retryText();
    }
    this.renderTransport();
  }

  remove() {
    this.removed = true;
    this.clearTimer();
    this.el.remove();
  }
}

// ---------------------------------------------------------------- the page's one stream

const live = {
  source: null,
  names: "", // the list the open (or opening) stream follows
  errors: 0, // failed connection attempts since the last success
  blockedUntil: 0, // after a failure, cards poll until then
  reopen: null, // timer: the list changed
};

// While any card is active, every card rides on the page's one stream (followed ones
// first, then the newest, up to the API's 50); the rest poll. Finished cards stay on
// the stream while it is open (a COMPLETED job may yet become a profile), so that the
// list, and with it the connection, changes only when cards come or go.
function rebalance() {
  const shown = [];
  for (const card of cards.values()) {
    if (card.removed) continue;
    if (card.invalid) card.setMode("done");
    else shown.push(card);
  }
  shown.sort((a, b) => (b.followed - a.followed) || (b.seq - a.seq));
  const streaming = HAS_SSE && Date.now() >= live.blockedUntil && shown.some((c) => !c.terminal);
  const streamed = streaming ? shown.slice(0, MAX_STREAMED) : [];
  for (const card of shown) {
    if (card.terminal) card.setMode("done");
    else card.setMode(streamed.includes(card) ? "sse" : "poll");
  }
  // Sorted: the same cards make the same URL, whose cursor EventSource sends back on reconnect.
  followOnStream(streamed.map((c) => c.username).sort().join(","));
  $("recent-empty").hidden = recentOff || [...cards.values()].some((c) => !c.followed);
  $("recent-off").hidden = !recentOff;
  $("following-section").hidden = ![...cards.values()].some((c) => c.followed);
}

function followOnStream(names) {
  if (names === live.names) return;
  live.names = names;
  clearTimeout(live.reopen);
  live.reopen = setTimeout(openStream, STREAM_REOPEN_MS);
}

function openStream() {
  closeStream();
  if (!live.names) return;
  // A new list is a new stream: it starts with every card's current answer.
  const source = new EventSource(`/api/status/stream?usernames=${live.names}`);
  live.source = source;
  source.addEventListener("open", () => { if (live.source === source) live.errors = 0; });
  source.addEventListener("status", (ev) => {
    if (live.source !== source) return;
    let body;
    try { body = JSON.parse(ev.data); } catch { return; }
    const card = body && cards.get(body.username);
    if (card && !card.removed && body.success) card.applyStreamed(body.data);
  });
  // The server's own failure (store or database away): it ends the stream.
  source.addEventListener("status_error", () => { if (live.source === source) dropStream(); });
  source.addEventListener("error", () => {
    if (live.source !== source) return;
    if (source.readyState === EventSource.CLOSED) {
      // No stream at all: 204 (everything final), 503 at the stream cap, a 4xx.
      return [...cards.values()].some((c) => c.mode === "sse") ? dropStream() : closeStream();
    }
    // CONNECTING: EventSource retries by itself, sending Last-Event-ID; give up after a few misses.
    if (++live.errors >= 3) dropStream();
  });
}

function closeStream() {
  if (live.source) { live.source.close(); live.source = null; }
}

function dropStream() {
  closeStream();
  live.names = "";
  live.errors = 0;
  live.blockedUntil = Date.now() + STREAM_BACKOFF_MS;
  rebalance(); // every active card polls now...
  setTimeout(rebalance, STREAM_BACKOFF_MS + 50); // ...and rides the stream again after the backoff
}

function addCard(username, followed) {
  const card = new Card(username, followed);
  cards.set(username, card);
  (followed ? $("following") : $("recent")).prepend(card.el);
  return card;
}

// ---------------------------------------------------------------- following

function loadFollowing() {
  try {
    const list = JSON.parse(localStorage.getItem(STORAGE_KEY) || "[]");
    return Array.isArray(list) ? list.filter((n) => typeof n === "string" && !normalizeUsername(n).error) : [];
  } catch { return []; }
}

function saveFollowing() {
  const names = [...cards.values()].filter((c) => c.followed).sort((a, b) => a.seq - b.seq).map((c) => c.username);
  try { localStorage.setItem(STORAGE_KEY, JSON.stringify(names)); } catch { /* private mode: not kept */ }
}

function follow(username) {
  let card = cards.get(username);
  if (card && card.followed) {
    card.el.classList.remove("flash");
    void card.el.offsetWidth; // restart the animation
    card.el.classList.add("flash");
  } else if (card) {
    card.followed = true;
    card.seq = ++cardSeq;
    $("following").prepend(card.el);
    card.renderTransport();
  } else {
    card = addCard(username, true);
  }
  saveFollowing();
  rebalance();
  return card;
}

function unfollow(username) {
  const card = cards.get(username);
  if (!card) return;
  card.remove();
  cards.delete(username);
  saveFollowing();
  rebalance();
}

function onFollowSubmit(ev) {
  ev.preventDefault();
  const input = $("follow-input");
  const errorEl = $("follow-error");
  const { name, error } = normalizeUsername(input.value);
  errorEl.hidden = !error;
  errorEl.textContent = error || "";
  input.setAttribute("aria-invalid", error ? "true" : "false");
  if (error) return;
  follow(name);
  input.value = "";
}

// ---------------------------------------------------------------- overview

async function getJSON(url) {
  const res = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
  const body = await res.json().catch(() => null);
  if (!res.ok || !body || !body.success) {
    const err = new Error((body && body.detail) || `HTTP ${res.status}`);
    err.status = res.status;
    throw err;
  }
  return body.data;
}

function syncRecent(usernames) {
  // Newest first: add in reverse so the newest ends on top; known cards keep their place.
  for (const name of [...usernames].reverse()) {
    if (!cards.has(name) && !normalizeUsername(name).error) addCard(name, false);
  }
  const auto = [...cards.values()].filter((c) => !c.followed).sort((a, b) => a.seq - b.seq);
  while (auto.length > RECENT_LIMIT) {
    // Drop the oldest finished card first, so running jobs stay in view.
    let i = auto.findIndex((c) => c.terminal || c.invalid);
    if (i < 0) i = 0;
    const [card] = auto.splice(i, 1);
    card.remove();
    cards.delete(card.username);
  }
  rebalance();
}

function renderOverview(q) {
  const byStatus = q.by_status || {};
  $("ov-active").textContent = whole.format(q.total_active ?? 0);
  $("ov-pending").textContent = whole.format(byStatus.PENDING ?? 0);
  $("ov-processing").textContent = whole.format(byStatus.PROCESSING ?? 0);
  $("ov-throughput").textContent = (q.completions_per_minute ?? 0).toFixed(1);
  $("ov-oldest").textContent = q.oldest_pending_age_seconds == null ? "–" : fmtDuration(q.oldest_pending_age_seconds);

  const p = q.projector || {};
  const stale = p.heartbeat_age_seconds == null || p.heartbeat_age_seconds > HEARTBEAT_STALE_S;
  $("ov-lag").textContent = p.backlog_age_seconds == null ? "–" : `${Number(p.backlog_age_seconds).toFixed(2)} s`;
  const note = $("ov-projector");
  note.textContent = stale
    ? (p.heartbeat_age_seconds == null ? "no heartbeat" : `heartbeat ${fmtDuration(p.heartbeat_age_seconds)} old`)
    : `backlog ${whole.format(p.backlog ?? 0)} · beat ${Number(p.heartbeat_age_seconds).toFixed(1)} s ago`;
  note.classList.toggle("warn", stale);

  const rows = $("ov-priorities");
  const prios = Object.keys(q.by_priority || {}); // in queue order, as the API names them
  const totals = prios.map((k) => {
    const c = (q.by_priority || {})[k] || {};
    return [k, c.PENDING || 0, c.PROCESSING || 0];
  });
  const max = Math.max(1, ...totals.map(([, a, b]) => a + b));
  rows.replaceChildren(...totals.map(([name, pending, processing]) => {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.scope = "row";
    const chip = document.createElement("span");
    chip.className = "chip";
    chip.dataset.priority = name;
    chip.textContent = name;
    th.append(chip);
    const td1 = document.createElement("td");
    td1.textContent = whole.format(pending);
    const td2 = document.createElement("td");
    td2.textContent = whole.format(processing);
    const td3 = document.createElement("td");
    td3.className = "bar-col";
    const bar = document.createElement("div");
    bar.className = "stack";
    const seg1 = document.createElement("span");
    seg1.className = "seg pending";
    seg1.style.width = `${(pending / max) * 100}%`;
    const seg2 = document.createElement("span");
    seg2.className = "seg processing";
    seg2.style.width = `${(processing / max) * 100}%`;
    bar.append(seg2, seg1);
    td3.append(bar);
    tr.append(th, td1, td2, td3);
    return tr;
  }));
}

let lastOverviewOk = 0;
// Listing recently changed usernames is off unless the server enables it (404): then
// the page shows only what its user follows.
let recentOff = false;

function setConnection(ok, text) {
  const conn = $("conn");
  conn.dataset.state = ok ? "ok" : "error";
  $("conn-text").textContent = text;
}

async function refreshOverview() {
  const [queue, recent] = await Promise.allSettled([
    getJSON("/api/queue/status"),
    recentOff ? Promise.resolve(null) : getJSON(`/api/queue/recent?limit=${RECENT_LIMIT}`),
  ]);
  if (queue.status === "fulfilled") {
    renderOverview(queue.value);
    lastOverviewOk = Date.now();
    setConnection(true, "live");
  } else {
    setConnection(false, `API: ${queue.reason.message} – retrying`);
  }
  if (recent.status === "fulfilled" && recent.value) syncRecent(recent.value.usernames || []);
  else if (recent.status === "rejected" && recent.reason.status === 404) { recentOff = true; rebalance(); }
}

async function overviewLoop() {
  if (!document.hidden) {
    try { await refreshOverview(); } catch (err) { setConnection(false, "API unreachable – retrying"); }
  }
  setTimeout(overviewLoop, OVERVIEW_EVERY_MS);
}

function tick() {
  for (const card of cards.values()) card.tick();
  $("overview-updated").textContent = lastOverviewOk ? `updated ${fmtAgo(lastOverviewOk)}` : "";
}

function main() {
  $("max-streamed").textContent = String(MAX_STREAMED);
  $("follow-form").addEventListener("submit", onFollowSubmit);
  for (const name of loadFollowing()) addCard(normalizeUsername(name).name, true);
  rebalance();
  overviewLoop();
  setInterval(tick, 1000);
}

document.addEventListener("DOMContentLoaded", main);
