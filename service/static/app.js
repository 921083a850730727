// street2shop page: upload or drop a photo, and say what it is for (the switch):
//   "find this item"  -> POST /search -> the shop's items that look like it;
//   "shop the look"   -> POST /looks/related -> the items a stylist would link to the look;
//   "wear it with"    -> POST /search (the best item) -> GET /items/{id}/looks -> lookbook posts.
// Click an item -> GET /items/{id}, GET /items/{id}/street (reverse search), "complete the
// look" (one best item per missing type, POST /outfits/complete) and its lookbook posts.
// "Find this item" draws the garments /search found on the photo: a click on one searches it
// (garment=<index>), a rectangle dragged on the photo searches that region (box=x0,y0,x1,y1).
// Plain DOM, nothing external.
"use strict";

const $ = (id) => document.getElementById(id);
let lastFile = null;
// The region of lastFile the next search is for: null (the best garment, or the whole
// photo), {garment: index} or {box: "x0,y0,x1,y1"}; a new photo starts again from null.
let region = null;

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.appendChild(child);
  return node;
}

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    throw new Error(`${response.status}: ${detail}`);
  }
  return body;
}

function card(imageUrl, lines, onClick, extraClass = "") {
  const node = el("div", { class: `card ${extraClass}` }, [el("img", { src: imageUrl, alt: lines[0], loading: "lazy" })]);
  lines.forEach((line, i) => node.appendChild(el("div", { class: i === 0 ? "score" : "", text: line })));
  if (onClick) node.addEventListener("click", onClick);
  return node;
}

const LOOKS_MAX_K = 50;

function mode() {
  return document.querySelector("input[name=mode]:checked").value;
}

function photoForm(file) {
  const form = new FormData();
  form.append("image", file);
  return form;
}

function itemCard(hit, first) {
  return card(hit.image_url, [first, hit.title || hit.item_id, `${hit.category} · ${hit.colour}`],
    (event) => showItem(hit.item_id, event.currentTarget));
}

// A lookbook post: its photo, its style and how many items its stylists linked.
function lookCard(hit, onClick) {
  const node = card(hit.image_url, [`${hit.score.toFixed(3)}  ${hit.style || ""}`, `${hit.items.length} linked items`], onClick, "look");
  node.dataset.snapId = hit.snap_id;
  return node;
}

async function search(file, wanted = null) {
  if (file !== lastFile) {
    lastFile = file;
    $("photo-img").src = URL.createObjectURL(file);
    $("photo").hidden = false;
    $("boxes").replaceChildren();
    $("drop-text").textContent = "Drop another photo here or click to choose one";
  }
  region = wanted;
  $("status").className = "muted";
  $("status").textContent = "searching...";
  const k = $("k").value || "20";
  const category = $("category").value;
  const style = $("style").value;
  try {
    let cards;
    if (mode() === "look") {
      const params = new URLSearchParams({ k: String(Math.min(Number(k), LOOKS_MAX_K)) });
      if (category) params.set("category", category);
      if (style) params.set("style", style);
      const data = await getJSON(`/looks/related?${params}`, { method: "POST", body: photoForm(file) });
      $("status").textContent = `${data.results.length} items for this look in ${data.took_ms.toFixed(0)} ms (looks model ${data.looks_model})`;
      cards = data.results.map((hit, i) => itemCard(hit, `#${i + 1}  ${hit.score.toFixed(3)}`));
    } else if (mode() === "wear") {
      const params = new URLSearchParams({ k: "1" });
      if (category) params.set("category", category);
      const found = await getJSON(`/search?${params}`, { method: "POST", body: photoForm(file) });
      if (!found.results.length) throw new Error("no item found in the photo");
      const item = found.results[0];
      const looksParams = new URLSearchParams({ k: String(Math.min(Number(k), LOOKS_MAX_K)) });
      if (style) looksParams.set("style", style);
      const data = await getJSON(`/items/${encodeURIComponent(item.item_id)}/looks?${looksParams}`);
      $("status").textContent = `${data.results.length} lookbook posts that wear ${item.title || item.item_id} (looks model ${data.looks_model})`;
      cards = data.results.map((hit) => lookCard(hit, () => showItem(item.item_id)));
    } else {
      const params = new URLSearchParams({ k });
      if (category) params.set("category", category);
      if (region && region.garment !== undefined) params.set("garment", String(region.garment));
      if (region && region.box !== undefined) params.set("box", region.box);
      const data = await getJSON(`/search?${params}`, { method: "POST", body: photoForm(file) });
      drawGarments(data);
      $("status").textContent = `${data.results.length} items for ${searchedWhat(data)} in ${data.took_ms.toFixed(0)} ms (index ${data.index_version})`;
      cards = data.results.map((hit) => itemCard(hit, `#${hit.rank}  ${hit.score.toFixed(3)}`));
    }
    if (mode() !== "find") {
      $("boxes").replaceChildren();
      $("photo-hint").textContent = "garments are drawn and searched one by one in \"find this item\"";
    }
    $("results-title").hidden = false;
    $("results").replaceChildren(...cards);
  } catch (error) {
    $("status").className = "error";
    $("status").textContent = `search failed: ${error.message}`;
  }
}

// ---------------------------------------------------------------- garments on the photo

function searchedWhat(data) {
  if (data.localised === "garment") {
    const garment = data.garments[data.garment];
    return `garment ${data.garment}${garment.category ? ` (${garment.category})` : ""}`;
  }
  if (data.localised === "box") return "the region drawn";
  return data.localised === "fixed_crops" ? "the photo's crops" : "the whole photo";
}

// A box [x0, y0, x1, y1] (fractions of the photo) laid over the photo.
function placeBox(node, box) {
  node.style.left = `${100 * box[0]}%`;
  node.style.top = `${100 * box[1]}%`;
  node.style.width = `${100 * (box[2] - box[0])}%`;
  node.style.height = `${100 * (box[3] - box[1])}%`;
  return node;
}

function drawGarments(data) {
  const nodes = data.garments.map((garment, i) => {
    const searched = data.localised === "garment" && data.garment === i;
    const node = placeBox(el("div", { class: searched ? "garment searched" : "garment", "data-index": String(i),
      title: `${garment.category || "garment"} (${garment.score.toFixed(2)}): click to search it` },
      [el("span", { text: `${i}${garment.category ? ` ${garment.category}` : ""}` })]), garment.box);
    // boxes overlap: the smaller lies on top, so that every one can be clicked
    node.style.zIndex = String(1 + Math.round(1000 * (1 - (garment.box[2] - garment.box[0]) * (garment.box[3] - garment.box[1]))));
    node.addEventListener("click", (event) => {
      event.stopPropagation();
      search(lastFile, { garment: i });
    });
    return node;
  });
  if (data.localised === "box") nodes.push(placeBox(el("div", { class: "drawn searched" }), data.box));
  $("boxes").replaceChildren(...nodes);
  const found = data.garments.length;
  $("photo-hint").textContent = found
    ? `${found} garment${found > 1 ? "s" : ""} found: click one to search it, or drag a rectangle around another`
    : "no garment found: the whole photo was searched; drag a rectangle to search one region";
}

// Dragging on the photo draws a rectangle; letting go searches that region (box=).
function initDrawing() {
  const layer = $("boxes");
  let start = null;
  let drawing = null;
  const at = (event) => {
    const r = layer.getBoundingClientRect();
    const clamp = (v) => Math.min(1, Math.max(0, v));
    return [clamp((event.clientX - r.left) / r.width), clamp((event.clientY - r.top) / r.height)];
  };
  const boxOf = (a, b) => [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])];
  layer.addEventListener("pointerdown", (event) => {
    if (event.target !== layer || !lastFile || mode() !== "find") return;  // a garment's own click
    event.preventDefault();
    layer.setPointerCapture(event.pointerId);
    start = at(event);
    drawing = placeBox(el("div", { class: "drawing" }), [...start, ...start]);
    layer.appendChild(drawing);
  });
  layer.addEventListener("pointermove", (event) => {
    if (start) placeBox(drawing, boxOf(start, at(event)));
  });
  layer.addEventListener("pointerup", (event) => {
    if (!start) return;
    const box = boxOf(start, at(event));
    start = null;
    drawing.remove();
    // a click or a sliver is not a region (the service refuses sides under 1 %)
    if (box[2] - box[0] < 0.02 || box[3] - box[1] < 0.02) return;
    search(lastFile, { box: box.map((v) => v.toFixed(4)).join(",") });
  });
}

async function showItem(itemId, selectedCard) {
  document.querySelectorAll("#results .card.selected").forEach((c) => c.classList.remove("selected"));
  if (selectedCard) selectedCard.classList.add("selected");
  $("item").hidden = false;
  $("item-reverse").replaceChildren(el("p", { class: "muted", text: "loading..." }));
  try {
    const item = await getJSON(`/items/${encodeURIComponent(itemId)}`);
    $("item-title").textContent = item.title || item.item_id;
    $("item-meta").textContent = `${item.item_id} · ${item.category} · ${item.colour}`;
    $("item-shop").replaceChildren(...item.shop_photos.map((p) => card(p.url, ["seller"])));
    $("item-street").replaceChildren(...item.street_photos.map((p) => card(p.url, ["customer"])));
    $("item").scrollIntoView({ behavior: "smooth" });
    completeTheLook(item);
    wearItWith(item);
    const reverse = await getJSON(`/items/${encodeURIComponent(itemId)}/street?k=12`);
    $("item-reverse").replaceChildren(...reverse.results.map((hit) =>
      card(hit.url, [hit.score.toFixed(3), hit.same_item ? "this item" : hit.item_id], null, hit.same_item ? "same" : "")));
  } catch (error) {
    $("item-reverse").replaceChildren(el("p", { class: "error", text: error.message }));
  }
}

let outfitTypes = null;

// The types an outfit still lacks once it holds an item of type `own`: a dress is a top and a
// bottom, so a dress needs neither and a top or a bottom needs no dress.
function missingTypes(own, types) {
  return types.filter((t) => t !== own
    && !(own === "dress" && (t === "top" || t === "bottom"))
    && !((own === "top" || own === "bottom") && t === "dress"));
}

async function completeTheLook(item) {
  const row = $("item-look");
  row.replaceChildren(el("p", { class: "muted", text: "loading..." }));
  try {
    outfitTypes = outfitTypes || await getJSON("/outfits/types");
    const own = outfitTypes.type_of_category[item.category];
    const wanted = missingTypes(own, outfitTypes.types);
    const answers = await Promise.all(wanted.map((type) => {
      const form = new FormData();
      form.append("items", item.item_id);
      form.append("type", type);
      return getJSON("/outfits/complete?k=1", { method: "POST", body: form });
    }));
    const cards = answers.filter((a) => a.results.length).map((a) => {
      const hit = a.results[0];
      return card(hit.image_url, [`${a.type}  ${hit.score.toFixed(3)}`, hit.title || hit.item_id], () => showItem(hit.item_id));
    });
    row.replaceChildren(...(cards.length ? cards : [el("p", { class: "muted", text: "nothing to add" })]));
  } catch (error) {
    row.replaceChildren(el("p", { class: "muted", text: `no outfit model: ${error.message}` }));
  }
}

async function wearItWith(item) {
  const row = $("item-wear");
  row.replaceChildren(el("p", { class: "muted", text: "loading..." }));
  try {
    const data = await getJSON(`/items/${encodeURIComponent(item.item_id)}/looks?k=6`);
    row.replaceChildren(...(data.results.length ? data.results.map((hit) => lookCard(hit, null))
      : [el("p", { class: "muted", text: "no lookbook post" })]));
  } catch (error) {
    row.replaceChildren(el("p", { class: "muted", text: `no looks model: ${error.message}` }));
  }
}

async function initLooks() {
  try {
    const looks = await getJSON("/looks/styles");
    for (const [style, posts] of Object.entries(looks.styles)) {
      $("style").appendChild(el("option", { value: style, text: `${style} (${posts})` }));
    }
  } catch (error) {
    // no looks model for the served crawl: only "find this item" can answer
    for (const input of document.querySelectorAll("input[name=mode]")) {
      if (input.value !== "find") {
        input.disabled = true;
        input.parentElement.title = error.message;
      }
    }
  }
}

function showModeControls() {
  $("style-label").hidden = mode() === "find";
}

async function init() {
  try {
    const health = await getJSON("/health");
    $("versions").textContent = `index ${health.index} · checkpoint ${health.checkpoint} · ${health.items} items`;
    for (const category of health.categories) $("category").appendChild(el("option", { value: category, text: category }));
  } catch (error) {
    $("versions").textContent = `service not ready: ${error.message}`;
  }
  $("file").addEventListener("change", () => { if ($("file").files.length) search($("file").files[0]); });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) search(event.dataTransfer.files[0]);
  });
  for (const id of ["category", "k", "style"]) $(id).addEventListener("change", () => { if (lastFile) search(lastFile, region); });
  for (const input of document.querySelectorAll("input[name=mode]")) {
    input.addEventListener("change", () => { showModeControls(); if (lastFile) search(lastFile, region); });
  }
  initDrawing();
  showModeControls();
  initLooks();
}

init();
