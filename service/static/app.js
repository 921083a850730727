// street2shop page: upload or drop a photo -> POST /search -> results grid; click an item ->
// GET /items/{id}, GET /items/{id}/street (reverse search) and "complete the look" (one best
// item per missing type, POST /outfits/complete). Plain DOM, nothing external.
"use strict";

const $ = (id) => document.getElementById(id);
let lastFile = null;

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

async function search(file) {
  lastFile = file;
  $("preview").src = URL.createObjectURL(file);
  $("preview").hidden = false;
  $("drop-text").hidden = true;
  $("status").className = "muted";
  $("status").textContent = "searching...";
  const form = new FormData();
  form.append("image", file);
  const params = new URLSearchParams({ k: $("k").value || "20" });
  if ($("category").value) params.set("category", $("category").value);
  try {
    const data = await getJSON(`/search?${params}`, { method: "POST", body: form });
    $("status").textContent = `${data.results.length} items in ${data.took_ms.toFixed(0)} ms (index ${data.index_version})`;
    $("results-title").hidden = false;
    $("results").replaceChildren(...data.results.map((hit) =>
      card(hit.image_url, [`#${hit.rank}  ${hit.score.toFixed(3)}`, hit.title || hit.item_id, `${hit.category} · ${hit.colour}`],
        (event) => showItem(hit.item_id, event.currentTarget))));
  } catch (error) {
    $("status").className = "error";
    $("status").textContent = `search failed: ${error.message}`;
  }
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
  for (const id of ["category", "k"]) $(id).addEventListener("change", () => { if (lastFile) search(lastFile); });
}

init();
