/* Reviewer portal: small progressive enhancements. Every page works without this script. */
(function () {
  "use strict";

  /* Tables become one card per row on small screens: each cell gets its column's header as data-label,
     which the stylesheet shows above the value. Rows spanning columns (empty states) are left as they are. */
  function labelTables(root) {
    root.querySelectorAll("main table").forEach(function (table) {
      if (table.classList.contains("cards") || table.classList.contains("keep-table")) return;
      var heads = table.querySelectorAll("thead th");
      if (!heads.length) return;
      var names = Array.prototype.map.call(heads, function (th) { return th.textContent.trim(); });
      table.querySelectorAll("tbody tr").forEach(function (row) {
        Array.prototype.forEach.call(row.children, function (cell, i) {
          if (cell.colSpan > 1) return;
          if (cell.tagName === "TD" && names[i]) cell.setAttribute("data-label", names[i]);
        });
      });
      table.classList.add("cards");
    });
  }

  /* After a refused form the address bar shows the page the form belongs to, not the POST-only address
     (which has nothing to show on a reload). */
  function fixAddress() {
    var meta = document.querySelector('meta[name="form-page"]');
    if (meta && meta.content && window.history && history.replaceState) {
      history.replaceState(null, "", meta.content + window.location.hash);
    }
  }

  /* After a refused submit, focus goes to the first field in error (its message is tied to it by
     aria-describedby), or to the form's error message when no single field is at fault. */
  function focusError() {
    if (!document.querySelector('meta[name="form-page"]')) return;
    var target = document.querySelector("main .field.has-error input:not([type=hidden]), " +
      "main .field.has-error select, main .field.has-error textarea");
    if (!target) {
      target = document.querySelector("main form .alert-error, main .alert-error[role=alert]");
      if (target && !target.hasAttribute("tabindex")) target.setAttribute("tabindex", "-1");
    }
    if (!target) return;
    for (var node = target.parentElement; node; node = node.parentElement) {
      if (node.tagName === "DETAILS") node.open = true;
    }
    target.focus({ preventScroll: true });
    target.scrollIntoView({ block: "center" });
  }

  /* The release form's "new label name" field matters only with "A new label": shown then, hidden otherwise
     (unless it carries an error). The server refuses a missing name either way. */
  function newLabelField() {
    var select = document.querySelector('select[name="release-label"]');
    var input = document.querySelector('input[name="release-new_label"]');
    if (!select || !input) return;
    var field = input.closest(".field");
    function sync() {
      var wanted = select.value === "__new__" || field.classList.contains("has-error");
      field.hidden = !wanted;
    }
    select.addEventListener("change", sync);
    sync();
  }

  function start() {
    labelTables(document);
    newLabelField();
    fixAddress();
    focusError();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
  /* htmx swaps (the run page's live part) bring new tables. */
  document.addEventListener("htmx:afterSwap", function (event) { labelTables(event.target.parentElement || document); });
})();
