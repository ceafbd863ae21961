// The recorder's web console: plain JavaScript, no build step, served embedded by the recorder
// (src/serve/console.ts). Every call goes through api(), which carries the API token when the
// recorder asks for one.
const $ = (id) => document.getElementById(id);
const HOUR = 3_600_000, DAY = 24 * HOUR, MIN_SPAN = 2 * 60_000;
const state = {
  token: sessionStorage.getItem("skyreel-token") ?? "",
  stream: null,
  chunks: [],
  view: { from: Date.now() - DAY, to: Date.now() + 5 * 60_000 },
  follow: true,
  lastSeq: null,
  clip: null,
};

let loginWait = null;
/** fetch() with the token; a 401 asks for it once and retries. */
async function api(path, init = {}) {
  for (;;) {
    const headers = new Headers(init.headers);
    if (state.token) headers.set("authorization", `Bearer ${state.token}`);
    const res = await fetch(path, { ...init, headers });
    if (res.status !== 401) return res;
    loginWait ??= askToken();
    await loginWait;
    loginWait = null;
  }
}

function askToken() {
  return new Promise((resolve) => {
    const dialog = $("login");
    dialog.addEventListener("close", () => {
      state.token = $("token").value;
      sessionStorage.setItem("skyreel-token", state.token);
      resolve();
    }, { once: true });
    if (!dialog.open) dialog.showModal();
  });
}

async function getJson(path, init) {
  const res = await api(path, init);
  const body = await res.json();
  if (!res.ok) throw new Error(body.error ?? `${res.status}`);
  return body;
}

// Times: the browser's zone, or UTC with the switch; ranges and files stay UTC.
const pad = (n, w = 2) => String(n).padStart(w, "0");
function fmt(ms, withMs = false) {
  const d = new Date(ms), utc = $("utc").checked;
  const [y, mo, da, h, mi, s, milli] = utc
    ? [
      d.getUTCFullYear(),
      d.getUTCMonth() + 1,
      d.getUTCDate(),
      d.getUTCHours(),
      d.getUTCMinutes(),
      d.getUTCSeconds(),
      d.getUTCMilliseconds(),
    ]
    : [
      d.getFullYear(),
      d.getMonth() + 1,
      d.getDate(),
      d.getHours(),
      d.getMinutes(),
      d.getSeconds(),
      d.getMilliseconds(),
    ];
  return `${y}-${pad(mo)}-${pad(da)} ${pad(h)}:${pad(mi)}:${pad(s)}${withMs ? `.${pad(milli, 3)}` : ""}${
    utc ? "Z" : ""
  }`;
}

// Streams: /healthz every 2 s.
async function refreshStreams() {
  const res = await fetch("/healthz");
  const h = await res.json();
  $("health").textContent = h.status;
  $("health").className = `pill ${h.status}`;
  const restarts = (name) =>
    h.actors.filter((a) => a.stream === name).reduce((n, a) => n + (a.restarts ?? 0), 0);
  const lastError = (name) =>
    h.actors.filter((a) => a.stream === name && a.lastError).map((a) => a.lastError)[0];
  $("streams").replaceChildren(...h.streams.map((s) => {
    const div = document.createElement("div");
    div.className = "stream";
    div.dataset.stream = s.stream;
    const live = liveState(s);
    const open = state.chunks.find((c) => c.status === "recording");
    div.innerHTML = `<b>${s.stream}</b><span class="state-${live}" data-state="${live}">${live}</span>
      <span>since</span><span>${fmt(Date.now() - s.since_seconds * 1000)}</span>
      <span>why</span><span>${escapeHtml(s.reason)}</span>
      ${
      s.stream === state.stream && open
        ? `<span>chunk</span><span>${fmt(Date.parse(open.from))}, ${fps(open)} fps, ${
          kbps(open)
        } kbit/s</span>`
        : ""
    }
      <span>restarts</span><span>${restarts(s.stream)}${
      lastError(s.stream) ? `: ${escapeHtml(lastError(s.stream))}` : ""
    }</span>`;
    return div;
  }));
  const select = $("stream");
  if (select.options.length !== h.streams.length) {
    select.replaceChildren(...h.streams.map((s) => new Option(s.stream, s.stream)));
    state.stream ??= h.streams[0]?.stream ?? null;
    select.value = state.stream;
  }
}

function liveState(s) {
  if (s.state !== "connected") return "disconnected";
  if (s.last_data_age_seconds === null) return "waiting";
  return s.last_data_age_seconds > 10 ? "idle" : "recording";
}
const span = (c) => Math.max(1, Date.parse(c.to) - Date.parse(c.from)) / 1000;
const fps = (c) => (c.frames / span(c)).toFixed(1);
const kbps = (c) => Math.round(c.bytes * 8 / span(c) / 1000);
const escapeHtml = (t) => String(t ?? "").replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);

// The timeline: one stream's chunks over the view window.
async function refreshChunks() {
  if (!state.stream) return;
  state.chunks = (await getJson(`/api/chunks?stream=${encodeURIComponent(state.stream)}`)).chunks;
  if (state.follow) {
    const span = state.view.to - state.view.from;
    state.view = { from: Date.now() - span + 5 * 60_000, to: Date.now() + 5 * 60_000 };
  }
  drawTimeline();
}

const x = (ms) => (ms - state.view.from) / (state.view.to - state.view.from) * 100;
function drawTimeline() {
  const tl = $("timeline");
  const bars = state.chunks.filter((c) =>
    Date.parse(c.to) >= state.view.from && Date.parse(c.from) <= state.view.to
  )
    .map((c) => {
      const div = document.createElement("div");
      const left = Math.max(0, x(Date.parse(c.from))), right = Math.min(100, x(Date.parse(c.to)));
      div.className = `chunk ${
        c.status === "recording"
          ? "recording"
          : c.status === "recovered"
          ? "recovered"
          : c.partial
          ? "partial"
          : ""
      }`;
      div.style.left = `${left}%`;
      div.style.width = `max(1px, ${right - left}%)`;
      div.dataset.path = c.path;
      div.dataset.from = c.from;
      div.dataset.to = c.to;
      div.title =
        `${fmt(Date.parse(c.from))} – ${fmt(Date.parse(c.to))}, ${c.frames} frames, ${c.width}x${c.height}` +
        (c.partial ? `, partial (${c.close_reason})` : "") + (c.status === "recovered" ? ", recovered" : "");
      return div;
    });
  const sel = state.selection ? [selectionDiv(state.selection)] : [];
  tl.replaceChildren(...bars, ...sel, $("cursor") ?? cursorDiv());
  $("window").textContent = `${fmt(state.view.from)} – ${fmt(state.view.to)}`;
  $("window").dataset.from = String(state.view.from);
  $("window").dataset.to = String(state.view.to);
  const ticks = 6, axis = [];
  for (let i = 0; i <= ticks; i++) {
    const t = state.view.from + (state.view.to - state.view.from) * i / ticks;
    const s = document.createElement("span");
    s.style.left = `${i * 100 / ticks}%`;
    s.textContent = fmt(t).slice(state.view.to - state.view.from > DAY / 2 ? 5 : 11, 16);
    axis.push(s);
  }
  $("axis").replaceChildren(...axis);
}
function cursorDiv() {
  const d = document.createElement("div");
  d.id = "cursor";
  return d;
}
function selectionDiv([a, b]) {
  const d = document.createElement("div");
  d.className = "selection";
  d.style.left = `${x(Math.min(a, b))}%`;
  d.style.width = `${Math.abs(x(b) - x(a))}%`;
  return d;
}

/** Zooms by `factor` about `centre`: the moment under the pointer, or now while following it. */
function zoom(factor, centre = state.follow ? Date.now() : (state.view.from + state.view.to) / 2) {
  const span = Math.min(7 * DAY, Math.max(MIN_SPAN, (state.view.to - state.view.from) * factor));
  const f = (centre - state.view.from) / (state.view.to - state.view.from);
  state.view = { from: centre - span * f, to: centre + span * (1 - f) };
  state.follow = state.view.to >= Date.now();
  drawTimeline();
}

function timeAt(event) {
  const r = $("timeline").getBoundingClientRect();
  return state.view.from + (event.clientX - r.left) / r.width * (state.view.to - state.view.from);
}

// The player: GET /api/clip from the moment clicked, through Media Source Extensions (a plain
// src could not carry the token), continuing across chunks; the wall clock of the frame shown.
async function play(at) {
  const chunk = state.chunks.find((c) => Date.parse(c.to) >= at) ?? state.chunks.at(-1);
  if (!chunk) return;
  at = Math.max(at, Date.parse(chunk.from));
  const to = Math.min(at + 30 * 60_000, Math.max(...state.chunks.map((c) => Date.parse(c.to))));
  state.clip?.abort();
  const ctl = new AbortController();
  state.clip = ctl;
  const res = await api(
    `/api/clip?stream=${encodeURIComponent(state.stream)}&from=${new Date(at).toISOString()}&to=${
      new Date(to).toISOString()
    }`,
    { signal: ctl.signal },
  );
  if (!res.ok) return;
  const clipFrom = Date.parse(res.headers.get("x-clip-from"));
  const video = $("video");
  const ms = new MediaSource();
  video.src = URL.createObjectURL(ms);
  await new Promise((r) => ms.addEventListener("sourceopen", r, { once: true }));
  const sb = ms.addSourceBuffer(`video/mp4; codecs="${chunk.codec}"`);
  state.clipStart = null;
  state.clipFrom = clipFrom;
  const reader = res.body.getReader();
  let first = true;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      await append(sb, value);
      if (first && sb.buffered.length > 0) {
        first = false;
        state.clipStart = sb.buffered.start(0);
        video.currentTime = state.clipStart;
        video.play().catch(() => {});
      }
      // Keep the buffer bounded: a long clip is read as it plays.
      while (sb.buffered.length && sb.buffered.end(sb.buffered.length - 1) - video.currentTime > 60) {
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    if (ms.readyState === "open") ms.endOfStream();
  } catch (e) {
    if (e.name !== "AbortError") console.warn("clip", e);
  }
}
function append(sb, bytes) {
  return new Promise((resolve, reject) => {
    sb.addEventListener("updateend", resolve, { once: true });
    sb.addEventListener("error", reject, { once: true });
    sb.appendBuffer(bytes);
  });
}
function tickClock() {
  const video = $("video");
  if (state.clipStart !== null && state.clipStart !== undefined && !Number.isNaN(state.clipFrom)) {
    const wall = state.clipFrom + (video.currentTime - state.clipStart) * 1000;
    $("clock").textContent = fmt(wall, true);
    $("clock").dataset.wallMs = String(Math.round(wall));
    $("clock").dataset.startS = String(state.clipStart);
    const c = $("cursor");
    c.style.display = "block";
    c.style.left = `${x(wall)}%`;
  }
  // A gap in the clip is a gap in its timeline: jump to the next buffered range.
  const b = video.buffered;
  for (let i = 0; i < b.length - 1; i++) {
    if (video.currentTime >= b.end(i) - 0.05 && video.currentTime < b.start(i + 1)) {
      video.currentTime = b.start(i + 1);
    }
  }
  requestAnimationFrame(tickClock);
}

// Export: a selected range downloaded, or saved into UPLOAD_PATH as an async job.
function range() {
  const from = Date.parse($("from").value), to = Date.parse($("to").value);
  if (!(from < to)) throw new Error("select a range (from before to)");
  return { from: new Date(from).toISOString(), to: new Date(to).toISOString() };
}
async function download() {
  const { from, to } = range();
  const res = await api(`/api/clip?stream=${encodeURIComponent(state.stream)}&from=${from}&to=${to}`);
  if (!res.ok) return alert((await res.json()).error);
  const a = document.createElement("a");
  a.href = URL.createObjectURL(await res.blob());
  a.download = `${state.stream}_${from.replaceAll(":", "-")}.mp4`;
  a.click();
}
async function save() {
  const body = { command: "save", stream: state.stream, ...range(), async: true };
  const { job_id: id } = await getJson("/command", { method: "POST", body: JSON.stringify(body) });
  const li = document.createElement("li");
  li.dataset.job = id;
  $("jobs").prepend(li);
  for (;;) {
    const job = await getJson(`/api/jobs/${id}`);
    li.dataset.state = job.state;
    li.textContent = job.state === "done"
      ? `saved ${job.filename}`
      : job.state === "failed"
      ? `failed: ${job.error}`
      : `${job.state} ${Math.round(job.progress * 100)}%`;
    if (job.state === "done" || job.state === "failed") return;
    await new Promise((r) => setTimeout(r, 500));
  }
}

// Storage: usage, recent deletions, and the events as they are recorded.
async function refreshStorage() {
  const s = await getJson("/command", {
    method: "POST",
    body: JSON.stringify({ command: "get-storage-state", stream: state.stream }),
  });
  const d = s.disk_usage;
  $("storage").textContent = `used ${d.storage_used_gb} GB of ${d.storage_limit_gb ?? "no limit"}` +
    `${d.storage_limit_gb ? " GB" : ""}; ${d.device_storage_remaining_gb} GB free on the device`;
  const { events } = await getJson(`/api/events${state.lastSeq === null ? "" : `?after=${state.lastSeq}`}`);
  for (const e of events) {
    state.lastSeq = e.seq;
    const li = document.createElement("li");
    li.textContent = `${fmt(e.timestamp * 1000)} ${e.stream} ${e.type} ${
      e.data.reason ?? e.data.state ?? e.data.chunk_info?.filename ?? ""
    }`;
    $("events").prepend(li);
    if (e.type === "chunk_deleted") {
      const del = document.createElement("li");
      del.textContent = `${fmt(e.timestamp * 1000)} ${e.stream} ${e.data.filename}: ${e.data.reason}`;
      $("deletions").prepend(del);
    }
  }
  for (const list of [$("events"), $("deletions")]) {
    while (list.children.length > 100) list.lastChild.remove();
  }
}

function every(ms, f) {
  const run = () => f().catch((e) => console.warn(e.message)).finally(() => setTimeout(run, ms));
  run();
}

// Wiring.
$("utc").addEventListener("change", () => drawTimeline());
$("stream").addEventListener("change", (e) => {
  state.stream = e.target.value;
  refreshChunks();
});
$("zoom-in").addEventListener("click", () => zoom(1 / 4));
$("zoom-out").addEventListener("click", () => zoom(4));
$("now").addEventListener("click", () => {
  state.follow = true;
  refreshChunks();
});
$("timeline").addEventListener("wheel", (e) => {
  e.preventDefault();
  zoom(e.deltaY > 0 ? 2 : 1 / 2, timeAt(e));
}, { passive: false });
let dragFrom = null;
$("timeline").addEventListener("pointerdown", (e) => {
  if (e.shiftKey) dragFrom = timeAt(e);
});
$("timeline").addEventListener("pointermove", (e) => {
  if (dragFrom === null) return;
  state.selection = [dragFrom, timeAt(e)];
  drawTimeline();
});
$("timeline").addEventListener("pointerup", (e) => {
  if (dragFrom === null) return play(timeAt(e));
  const [a, b] = [dragFrom, timeAt(e)].sort((p, q) => p - q);
  dragFrom = null;
  $("from").value = new Date(a).toISOString();
  $("to").value = new Date(b).toISOString();
});
// A chunk's thumbnail on hover, fetched once (with the token) and kept.
const thumbs = new Map();
let hovered = null;
$("timeline").addEventListener("pointermove", async (e) => {
  const chunk = e.target.closest?.(".chunk");
  const img = $("thumb");
  if (!chunk || dragFrom !== null) {
    hovered = null;
    img.hidden = true;
    return;
  }
  const panel = $("timeline-panel").getBoundingClientRect();
  img.style.left = `${Math.min(e.clientX - panel.left, panel.width - 250)}px`;
  img.style.top = `${e.clientY - panel.top + 16}px`;
  if (hovered === chunk.dataset.path) return;
  hovered = chunk.dataset.path;
  if (!thumbs.has(hovered)) {
    thumbs.set(
      hovered,
      api(`/api/thumbnail?stream=${encodeURIComponent(state.stream)}&chunk=${encodeURIComponent(hovered)}`)
        .then((r) => r.ok ? r.blob() : null).then((b) => b && URL.createObjectURL(b)),
    );
  }
  const url = await thumbs.get(hovered);
  if (url && hovered === chunk.dataset.path) {
    img.src = url;
    img.hidden = false;
  }
});
$("timeline").addEventListener("pointerleave", () => {
  hovered = null;
  $("thumb").hidden = true;
});
$("download").addEventListener("click", () => download().catch((e) => alert(e.message)));
$("save").addEventListener("click", () => save().catch((e) => alert(e.message)));

await refreshStreams().catch((e) => console.warn(e.message));
every(2000, refreshStreams);
every(5000, refreshChunks);
every(2000, refreshStorage);
requestAnimationFrame(tickClock);
