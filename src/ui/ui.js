// The forensic view's only script, served from the binary: keyboard
// stepping through versions (a / d or the arrow keys follow the page's
// rel=prev / rel=next links). Pages work without it.
document.addEventListener("keydown", function (e) {
  if (e.target && /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName)) return;
  var rel = null;
  if (e.key === "ArrowLeft" || e.key === "a") rel = "prev";
  if (e.key === "ArrowRight" || e.key === "d") rel = "next";
  if (!rel) return;
  var link = document.querySelector('a[rel="' + rel + '"]');
  if (link) window.location.href = link.href;
});
