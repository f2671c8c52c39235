// ferkit web page: camera frames -> POST /api/v1/predict -> boxes, labels, confidence bars, FPS.
"use strict";

const COLORS = { angry: "#e62828", disgust: "#3c8c28", fear: "#a03ca0", happy: "#fac828", sad: "#2878c8", surprise: "#3cb4e6", neutral: "#bebebe" };
const MAX_SIDE = 640;      // frames are sent at most this large: enough for faces, light on the network
const MAX_RATE = 15;       // frames per second at most; the next frame waits for the previous answer
const $ = (id) => document.getElementById(id);

let labels = [];
let showAll = false, paused = false, running = false, lastFaces = [];
let frames = [], fps = 0;

fetch("/api/v1/model").then((r) => r.json()).then((m) => { labels = m.labels; });

// Tabs
document.querySelectorAll("button.tab").forEach((tab) => tab.addEventListener("click", () => {
  document.querySelectorAll(".tab, .panel").forEach((el) => el.classList.remove("active"));
  tab.classList.add("active");
  $(tab.dataset.panel).classList.add("active");
}));

function drawFaces(ctx, faces, scale, all) {
  ctx.lineWidth = Math.max(2, 3 * scale);
  ctx.font = `${Math.round(16 * Math.max(scale, 0.8))}px system-ui, sans-serif`;
  for (const f of faces) {
    const [x, y, w, h] = f.box.map((v) => v * scale);
    const color = COLORS[f.label] || "#0f0";
    ctx.strokeStyle = color;
    ctx.strokeRect(x, y, w, h);
    const text = `${f.label} ${Math.round(f.confidence * 100)}%`;
    const tw = ctx.measureText(text).width + 8, th = 22 * Math.max(scale, 0.8);
    const ty = y - th >= 0 ? y - th : y + h;
    ctx.fillStyle = color;
    ctx.fillRect(x, ty, tw, th);
    ctx.fillStyle = "#000";
    ctx.fillText(text, x + 4, ty + th - 6);
    if (all) {
      const bx = x + w + 6, rowH = 16, bw = 90;
      ctx.fillStyle = "rgba(0,0,0,0.6)";
      ctx.fillRect(bx - 2, y, bw + 76, rowH * 7 + 4);
      Object.entries(f.probabilities).forEach(([label, p], i) => {
        ctx.fillStyle = "#fff";
        ctx.font = "12px system-ui, sans-serif";
        ctx.fillText(label, bx, y + 13 + i * rowH);
        ctx.fillStyle = "#444";
        ctx.fillRect(bx + 70, y + 4 + i * rowH, bw, rowH - 5);
        ctx.fillStyle = COLORS[label] || "#0f0";
        ctx.fillRect(bx + 70, y + 4 + i * rowH, bw * p, rowH - 5);
      });
    }
  }
}

function listFaces(ul, faces) {
  ul.dataset.count = String(faces.length);
  ul.replaceChildren(...faces.map((f) => {
    const li = document.createElement("li");
    li.className = "face";
    li.dataset.label = f.label;
    li.textContent = `${f.label} ${(f.confidence * 100).toFixed(0)}%  at (${f.box.join(", ")})`;
    return li;
  }));
}

async function postImage(blob) {
  const res = await fetch("/api/v1/predict", { method: "POST", body: blob, headers: { "Content-Type": blob.type || "application/octet-stream" } });
  const body = await res.json();
  if (!res.ok) throw new Error(body.detail || res.statusText);
  return body;
}

// Live camera
const video = $("video"), overlay = $("overlay"), grab = document.createElement("canvas");

function render() {
  overlay.width = video.clientWidth;
  overlay.height = video.clientHeight;
  const ctx = overlay.getContext("2d");
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  drawFaces(ctx, lastFaces, overlay.width / grab.width, showAll);
}

async function loop() {
  while (running) {
    const started = performance.now();
    if (!paused && video.videoWidth) {
      const s = Math.min(1, MAX_SIDE / Math.max(video.videoWidth, video.videoHeight));
      grab.width = Math.round(video.videoWidth * s);
      grab.height = Math.round(video.videoHeight * s);
      grab.getContext("2d").drawImage(video, 0, 0, grab.width, grab.height);
      const blob = await new Promise((resolve) => grab.toBlob(resolve, "image/jpeg", 0.85));
      try {
        const result = await postImage(blob);
        lastFaces = result.faces;
        listFaces($("faces"), lastFaces);
        if (!paused) $("status").textContent = lastFaces.length ? `${lastFaces.length} face(s)` : "no face in view";  // an answer landing after a pause must not hide it
        const now = performance.now();
        frames.push(now);
        frames = frames.filter((t) => now - t < 2000);
        fps = frames.length > 1 ? (frames.length - 1) / ((now - frames[0]) / 1000) : 0;
        $("fps").textContent = `${fps.toFixed(1)} FPS`;
      } catch (err) {
        $("status").textContent = `server: ${err.message}`;
      }
      render();
    }
    const wait = 1000 / MAX_RATE - (performance.now() - started);
    await new Promise((resolve) => setTimeout(resolve, Math.max(wait, paused ? 100 : 0)));
  }
}

$("start").addEventListener("click", async () => {
  try {
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (err) {
    $("status").textContent = `camera unavailable: ${err.message}`;
    return;
  }
  await video.play();
  running = true;
  $("start").disabled = true;
  $("pause").disabled = $("shot").disabled = false;
  $("status").textContent = "camera on";
  loop();
});

function togglePause() {
  paused = !paused;
  $("pause").textContent = paused ? "Resume (space)" : "Pause (space)";
  paused ? video.pause() : video.play();
  $("status").textContent = paused ? "paused" : "camera on";
}

function screenshot() {
  const shot = document.createElement("canvas");
  shot.width = video.videoWidth;
  shot.height = video.videoHeight;
  const ctx = shot.getContext("2d");
  ctx.drawImage(video, 0, 0);
  drawFaces(ctx, lastFaces, shot.width / grab.width, showAll);
  const a = document.createElement("a");
  a.download = `ferkit_${new Date().toISOString().replace(/[:.]/g, "-")}.png`;
  a.href = shot.toDataURL("image/png");
  a.click();
}

$("pause").addEventListener("click", togglePause);
$("shot").addEventListener("click", screenshot);
$("all").addEventListener("change", (e) => { showAll = e.target.checked; render(); });
document.addEventListener("keydown", (e) => {
  if (!running || e.target.tagName === "INPUT") return;
  if (e.key === " ") { e.preventDefault(); togglePause(); }
  else if (e.key === "s" || e.key === "S") screenshot();
  else if (e.key === "a" || e.key === "A") { $("all").checked = showAll = !showAll; render(); }
});

// Upload
$("upload-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const file = $("file").files[0];
  if (!file) { $("upload-status").textContent = "choose an image first"; return; }
  $("upload-status").textContent = "recognising...";
  try {
    const result = await postImage(file);
    const img = await createImageBitmap(file);
    const canvas = $("upload-canvas");
    canvas.width = img.width;
    canvas.height = img.height;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0);
    drawFaces(ctx, result.faces, 1, true);
    listFaces($("upload-faces"), result.faces);
    $("upload-status").textContent = `${result.faces.length} face(s) in ${result.time_ms} ms`;
  } catch (err) {
    $("upload-status").textContent = `error: ${err.message}`;
  }
});
