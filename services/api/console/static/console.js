// Small improvements only: every page works without this file.
// Submitting a form twice (a double click) would send it twice: disable its buttons once sent.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.method.toLowerCase() !== "post") return;
  setTimeout(() => form.querySelectorAll("button[type=submit]").forEach((b) => { b.disabled = true; }), 0);
});
// Focus the first field the server marked invalid, so keyboard users land on the problem.
window.addEventListener("DOMContentLoaded", () => {
  const bad = document.querySelector("[aria-invalid=true]");
  if (bad) bad.focus();
});
// Back to a page kept in the browser's cache: its buttons must work again.
window.addEventListener("pageshow", (event) => {
  if (event.persisted) document.querySelectorAll("button[type=submit]").forEach((b) => { b.disabled = false; });
});
