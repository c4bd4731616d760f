/* Authoring pages: the dynamic rows of the new-program form and the draft editor, and picking dataset rows.
   Plain DOM, no framework. Without JavaScript the forms still post; only adding rows needs it. Row names carry
   indexes (p0-in1-name, p0-d3-category); the server reads them in index order, so after a reorder the demo rows
   are renumbered in page order. */
(function () {
  "use strict";

  function fromTemplate(id, replacements) {
    var html = document.getElementById(id).innerHTML;
    Object.keys(replacements).forEach(function (key) { html = html.split(key).join(replacements[key]); });
    var holder = document.createElement("div");
    holder.innerHTML = html.trim();
    return holder.firstElementChild;
  }

  function nextIndex(container, pattern) {
    var highest = -1;
    container.querySelectorAll("[name]").forEach(function (input) {
      var match = input.name.match(pattern);
      if (match) { highest = Math.max(highest, parseInt(match[1], 10)); }
    });
    return highest + 1;
  }

  function pickRows() {
    var data = document.getElementById("pick-rows");
    return data ? JSON.parse(data.textContent) : [];
  }

  /* --- new program: predictors and their fields ------------------------------------------------------- */

  function setUpProgramForm(form) {
    form.addEventListener("click", function (event) {
      var button = event.target.closest("button");
      if (!button) { return; }
      if (button.hasAttribute("data-add-row")) {
        var prefix = button.getAttribute("data-add-row");
        var rows = form.querySelector('[data-rows="' + prefix + '"]');
        var index = nextIndex(rows, new RegExp("^" + prefix + "(\\d+)-"));
        var row = fromTemplate("field-row-template", {"__ROW__": prefix + index});
        rows.appendChild(row);
        row.querySelector("input").focus();
      } else if (button.hasAttribute("data-remove-row")) {
        button.closest("[data-row]").remove();
      } else if (button.hasAttribute("data-add-predictor")) {
        var list = form.querySelector("[data-predictors]");
        var p = nextIndex(list, /^p(\d+)-name$/);
        var predictor = fromTemplate("predictor-template", {"__P__": String(p)});
        list.appendChild(predictor);
        numberPredictors(list);
        predictor.querySelector("input").focus();
      } else if (button.hasAttribute("data-remove-predictor")) {
        var all = form.querySelector("[data-predictors]");
        button.closest("[data-predictor]").remove();
        numberPredictors(all);
      }
    });
  }

  function numberPredictors(list) {
    list.querySelectorAll("[data-predictor-number]").forEach(function (span, i) { span.textContent = i + 1; });
  }

  /* --- draft editor: demos ----------------------------------------------------------------------------- */

  function renumberDemos(list) {
    var p = list.getAttribute("data-demos");
    list.querySelectorAll("[data-demo]").forEach(function (row, k) {
      row.querySelectorAll("[name], [id], [for]").forEach(function (el) {
        ["name", "id", "for"].forEach(function (attr) {
          var value = el.getAttribute(attr);
          if (value) { el.setAttribute(attr, value.replace(new RegExp("^p" + p + "-d\\d+-"), "p" + p + "-d" + k + "-")); }
        });
      });
      var number = row.querySelector("[data-demo-number]");
      if (number) { number.textContent = k + 1; }
    });
  }

  function addDemo(list, values) {
    var p = list.getAttribute("data-demos");
    var row = fromTemplate("demo-template-" + p, {"__D__": String(nextIndex(list, new RegExp("^p" + p + "-d(\\d+)-")))});
    list.appendChild(row);
    row.querySelectorAll("[data-js-only]").forEach(function (el) { el.hidden = false; });
    row.querySelectorAll("[data-remove-checkbox]").forEach(function (box) { box.remove(); });
    Object.keys(values || {}).forEach(function (name) {
      var input = row.querySelector('[data-field="' + name + '"]');
      if (input) { input.value = values[name]; }
    });
    renumberDemos(list);
    return row;
  }

  function refreshPreview(form) {
    form.dispatchEvent(new CustomEvent("preview-refresh", {bubbles: true}));
  }

  function setUpEditor(form) {
    var rows = pickRows();
    form.addEventListener("click", function (event) {
      var button = event.target.closest("button");
      if (!button) { return; }
      var list = button.closest("[data-predictor-editor]") &&
        button.closest("[data-predictor-editor]").querySelector("[data-demos]");
      var row = button.closest("[data-demo]");
      if (button.hasAttribute("data-add-demo")) {
        addDemo(list).querySelector("textarea, input:not([type=hidden])").focus();
      } else if (button.hasAttribute("data-pick-demo")) {
        var select = button.parentElement.querySelector("select");
        var picked = rows[parseInt(select.value, 10)];
        if (picked) { addDemo(list, picked.values); }
      } else if (button.hasAttribute("data-remove-demo")) {
        row.remove();
      } else if (button.hasAttribute("data-move-up") && row.previousElementSibling) {
        row.parentElement.insertBefore(row, row.previousElementSibling);
      } else if (button.hasAttribute("data-move-down") && row.nextElementSibling) {
        row.parentElement.insertBefore(row.nextElementSibling, row);
      } else {
        return;
      }
      event.preventDefault();
      if (list) { renumberDemos(list); }
      refreshPreview(form);
    });
    /* With JavaScript, removing is immediate; the no-JS "remove" checkboxes go. */
    form.querySelectorAll("[data-remove-checkbox]").forEach(function (box) { box.remove(); });
  }

  /* --- playground: a dataset row as the input ---------------------------------------------------------- */

  function setUpPlayground(form) {
    var rows = pickRows();
    var example = form.querySelector('[name="example"]');
    var select = document.getElementById("pick-row");
    if (select) {
      select.addEventListener("change", function () {
        var picked = rows[parseInt(select.value, 10)];
        if (!picked) { example.value = ""; return; }
        Object.keys(picked.values).forEach(function (name) {
          var input = form.querySelector('[name="in-' + name + '"]');
          if (input) { input.value = picked.values[name]; }
        });
        example.value = picked.pk;
      });
    }
    form.querySelectorAll('[name^="in-"]').forEach(function (input) {
      input.addEventListener("input", function () { example.value = ""; if (select) { select.value = ""; } });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-js-only]").forEach(function (el) { el.hidden = false; });
    document.querySelectorAll("[data-program-form]").forEach(setUpProgramForm);
    document.querySelectorAll("[data-draft-editor]").forEach(setUpEditor);
    document.querySelectorAll("[data-playground]").forEach(setUpPlayground);
  });
})();
