// The nic compare page: start a comparison on the server, poll its progress, show the numbers and a
// swipe view of any two results. Plain JavaScript, no build step, nothing loaded from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
let source = null;       // {file} or {sample}: what "compare" codes again with new settings
let current = null;      // the finished job: {id, result}
let running = 0;         // the newest request; older ones are ignored when they answer
let limits = {};         // from /api/info

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function setProgress(done, total, step) {
  $("progress").hidden = false;
  $("bar").max = total;
  $("bar").value = done;
  $("step").textContent = step;
}

function rateQuery() {
  const byBpp = document.querySelector("input[name=rate]:checked").value === "bpp";
  const q = new URLSearchParams(byBpp ? {bpp: $("bpp").value} : {quality: $("quality").value});
  q.set("model", $("model").value);
  return q;
}

async function start(what) {
  source = what;
  const ticket = ++running;
  showError("");
  if (what.file && what.file.size > limits.max_upload_bytes) {  // the server refuses it too
    showError(`${what.file.name}: ${(what.file.size / 1048576).toFixed(1)} MB is over the limit of ` +
              `${limits.max_upload_bytes / 1048576} MB`);
    return;
  }
  setProgress(0, 1, "uploading");
  const query = rateQuery();
  const init = {method: "POST", headers: {}};
  if (what.sample) {
    query.set("sample", what.sample);
  } else {
    init.body = what.file;
    init.headers["X-Filename"] = encodeURIComponent(what.file.name);
  }
  let answer;
  try {
    const response = await fetch("/api/compare?" + query, init);
    answer = await response.json().catch(() => ({error: `the server answered ${response.status}`}));
  } catch (e) {
    answer = {error: `cannot reach the server (${e.message})`};
  }
  if (ticket !== running) return;
  if (answer.error) {
    $("progress").hidden = true;
    showError(answer.error);
    return;
  }
  poll(answer.job, ticket);
}

async function poll(id, ticket) {
  for (;;) {
    let status;
    try {
      status = await (await fetch(`/api/jobs/${id}`)).json();
    } catch (e) {
      status = {state: "error", error: `lost the server (${e.message})`};
    }
    if (ticket !== running) return;
    if (status.state === "done") {
      $("progress").hidden = true;
      render(id, status.result, status.seconds);
      return;
    }
    if (status.state === "error" || status.error) {
      $("progress").hidden = true;
      showError(status.error);
      return;
    }
    setProgress(status.done, status.total, status.step);
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
}

const fmt = {
  bytes: (v) => v.toLocaleString("en-US"),
  bpp: (v) => v.toFixed(3),
  psnr: (v) => (v === null ? "∞ (identical)" : v.toFixed(2)),  // JSON has no infinity: null means identical
  ssim: (v) => (v === null ? "n/a" : v.toFixed(4)),  // null: the image is too small for SSIM's window
};

function link(href, text) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  return a;
}

function render(id, result, seconds) {
  current = {id, result};
  const base = `/api/jobs/${id}`;
  $("title").textContent = `${result.name}, ${result.width}x${result.height}: every file at most ` +
    `${fmt.bytes(result.budget)} bytes (nic's)`;
  const notes = [`coded in ${seconds.toFixed(1)} s`];
  if (result.missing.length) notes.push(`no setting of ${result.missing.join(", ")} makes a file that small`);
  if (result.alpha_dropped) notes.push("the alpha channel was left out: every codec is scored on the colours");
  $("note").textContent = notes.join("; ");
  const body = $("table").tBodies[0];
  body.replaceChildren();
  for (const c of result.coded) {
    const row = body.insertRow();
    row.className = c.key;
    row.dataset.key = c.key;
    for (const [name, text] of [["label", c.label], ["setting", c.setting], ["bytes", fmt.bytes(c.bytes)],
                                ["bpp", fmt.bpp(c.bpp)], ["psnr", fmt.psnr(c.psnr)], ["ssim", fmt.ssim(c.ssim)]]) {
      const cell = row.insertCell();
      cell.className = name;
      cell.textContent = text;
    }
    const downloads = row.insertCell();
    downloads.append(link(`${base}/${c.key}.${c.ext}?download=1`, `.${c.ext}`),
                     link(`${base}/${c.key}.png?download=1`, "decoded PNG"));
  }
  const choices = [{key: "original", label: "original"}, ...result.coded];
  for (const side of ["left", "right"]) {
    const select = $(side);
    const keep = select.value;
    select.replaceChildren(...choices.map((c) => new Option(c.label, c.key)));
    const fallback = side === "left" ? "nic" : (choices.find((c) => c.key === "jpeg") || choices[0]).key;
    select.value = choices.some((c) => c.key === keep) ? keep : fallback;
  }
  $("results").hidden = false;
  showImages();
}

function showImages() {
  if (!current) return;
  const id = current.id;
  const loads = ["left", "right"].map((side) => {
    const img = $(`img-${side}`);
    const src = new URL(`/api/jobs/${id}/${$(side).value}.png`, location.href).href;
    $(`label-${side}`).textContent = $(side).selectedOptions[0].textContent;
    if (img.src === src && img.complete) return Promise.resolve();
    return new Promise((resolve, reject) => {
      img.onload = resolve;
      img.onerror = () => reject(new Error(`the ${side} image did not load`));
      img.src = src;
    });
  });
  Promise.all(loads).then(() => {
    if (current.id !== id) return;
    layout();
    $("results").dataset.shown = id;
  }, (e) => showError(e.message));
}

function layout() {
  if (!current) return;
  const {width, height} = current.result;
  const zoom = $("zoom").value;
  const viewer = $("viewer");
  let scale;
  if (zoom === "fit") {
    scale = Math.min((viewer.clientWidth || width) / width, (window.innerHeight * 0.8 - 2) / height);
  } else {
    scale = Number(zoom) / (window.devicePixelRatio || 1);  // one image pixel per screen pixel at "actual"
  }
  const stage = $("stage");
  stage.style.width = `${width * scale}px`;
  stage.style.height = `${height * scale}px`;
  stage.classList.toggle("zoomed", scale > 1);  // enlarged pixels stay sharp squares
  swipe();
}

function swipe() {
  const p = $("swipe").value / 10;
  $("img-right").style.clipPath = `inset(0 0 0 ${p}%)`;
  $("divider").style.left = `${p}%`;
}

function dragSwipe(event) {
  const box = $("stage").getBoundingClientRect();
  $("swipe").value = Math.round(Math.min(1, Math.max(0, (event.clientX - box.left) / box.width)) * 1000);
  swipe();
}

async function init() {
  const info = await (await fetch("/api/info")).json();
  limits = info;
  $("sample").replaceChildren(...info.samples.map((s) => new Option(s, s)));
  $("model").replaceChildren(...info.models.map((m) => new Option(m, m)));
  $("model").value = info.default_model;
  // the quality scale and the size limit are the server's: nic.quality and nic serve's own
  Object.assign($("quality"), {min: info.quality_min, max: info.quality_max, value: info.default_quality});
  $("bpp").max = info.max_bpp;
  $("limits").textContent = `Any image Pillow reads, up to ${info.max_upload_bytes / 1048576} MB and ` +
    `${(info.max_pixels / 1e6).toFixed(1)} megapixels. It is coded on this machine and kept in memory only.`;

  $("file").addEventListener("change", () => { if ($("file").files[0]) start({file: $("file").files[0]}); });
  const drop = $("drop");
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) start({file: e.dataTransfer.files[0]});
  });
  window.addEventListener("dragover", (e) => e.preventDefault());  // a missed drop must not navigate away
  window.addEventListener("drop", (e) => e.preventDefault());
  $("use-sample").addEventListener("click", () => start({sample: $("sample").value}));
  $("again").addEventListener("click", () => source && start(source));
  for (const id of ["quality", "bpp"]) {
    $(id).addEventListener("keydown", (e) => { if (e.key === "Enter" && source) start(source); });
  }
  $("left").addEventListener("change", showImages);
  $("right").addEventListener("change", showImages);
  $("zoom").addEventListener("change", layout);
  $("swipe").addEventListener("input", swipe);
  window.addEventListener("resize", layout);
  const stage = $("stage");
  stage.addEventListener("pointerdown", (e) => { stage.setPointerCapture(e.pointerId); dragSwipe(e); });
  stage.addEventListener("pointermove", (e) => { if (stage.hasPointerCapture(e.pointerId)) dragSwipe(e); });

  if (info.samples.length) start({sample: info.samples[0]});
}

init().catch((e) => showError(`cannot load the page's settings (${e.message})`));
