// Focus mode (templates/review/item_focus.html): its keys, the draft kept in this tab until a
// save succeeds, and save errors said in words. Without it the page still works: the forms post
// and the server answers with the next item, or with the form as posted and why it was refused.
(function () {
  "use strict";
  var root = document.getElementById("focus");
  if (!root) return;
  var form = document.getElementById("label-form");
  var status = document.getElementById("focus-status");
  var errors = document.getElementById("label-errors");
  var draftKey = root.dataset.draftKey;
  var current = null; // the question (schema fieldset) that last had the focus

  function say(text) {
    status.textContent = "";
    // A new text node after a tick, so a screen reader announces a repeated message too.
    setTimeout(function () { status.textContent = text; }, 50);
  }
  function alertError(text) {
    errors.innerHTML = "";
    var p = document.createElement("p");
    p.textContent = text;
    errors.appendChild(p);
  }

  // --- Keys -------------------------------------------------------------------------------------
  var TEXT_INPUTS = ["text", "number", "search", "email", "url", "tel", "password", "date"];
  function typing(el) {
    if (!el || !el.tagName) return false;
    if (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT") return true;
    return el.tagName === "INPUT" && TEXT_INPUTS.indexOf(el.type || "text") >= 0;
  }
  function schemas() {
    return form ? Array.prototype.slice.call(form.querySelectorAll("fieldset.schema")) : [];
  }
  function focusedSchema() {
    var here = document.activeElement && document.activeElement.closest("fieldset.schema");
    if (here && form && form.contains(here)) return here;
    return current || schemas()[0] || null;
  }
  document.addEventListener("focusin", function (event) {
    var fieldset = event.target.closest && event.target.closest("fieldset.schema");
    if (fieldset && form && form.contains(fieldset)) current = fieldset;
  });

  function pick(n) {
    var fieldset = focusedSchema();
    if (!fieldset) return;
    var input = fieldset.querySelectorAll("input[type=radio], input[type=checkbox]")[n - 1];
    if (!input) {
      say("This question has no option " + n + ".");
      return;
    }
    if (input.disabled) return;
    input.checked = input.type === "checkbox" ? !input.checked : true;
    input.focus();
    input.dispatchEvent(new Event("change", {bubbles: true}));
  }
  function focusField(el, missing) {
    if (el) { el.focus(); } else { say(missing); }
  }
  function comment() {
    var fieldset = focusedSchema();
    var own = fieldset && fieldset.querySelector("[data-comment]");
    focusField(own || document.getElementById("f-comment"), "There is no comment box here.");
  }
  function skip() {
    var box = document.getElementById("skip-box");
    if (!box) {
      say("This item cannot be skipped: you labelled it (change the label instead), or the session is closed.");
      return;
    }
    box.open = true;
    document.getElementById("skip-reason").focus();
  }
  function go(id, missing) {
    var link = document.getElementById(id);
    if (link) { window.location.href = link.href; } else { say(missing); }
  }
  function openDialog(id) {
    var dialog = document.getElementById(id);
    if (dialog && !dialog.open) dialog.showModal();
  }
  function submit(target) {
    var owner = target && target.form ? target.form : form;
    if (!owner || owner.querySelector("fieldset[disabled]") && owner === form) return;
    owner.requestSubmit();
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.isComposing) return;
    if (document.querySelector("dialog[open]")) return; // a dialog's own keys (Esc closes it)
    var el = event.target;
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      submit(el);
      return;
    }
    if (typing(el)) {
      if (event.key === "Escape") el.blur(); // back to the keys; the question stays current
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var key = event.key;
    if (key === "Enter") {
      // Links, buttons and folds keep their own Enter; elsewhere Enter saves.
      if (el.closest && el.closest("a, button, summary, dialog, .trace")) return;
      event.preventDefault();
      submit(el);
      return;
    }
    var actions = {
      j: function () { go("next-item", "This is your newest item: save or skip it to get another."); },
      k: function () { go("prev-item", "This is your first item."); },
      c: comment,
      e: function () { focusField(form && form.querySelector("[data-better]"), "This session asks for no better answer."); },
      s: skip,
      "?": function () { openDialog("keys-dialog"); },
      i: function () { openDialog("instructions-dialog"); },
    };
    if (/^[1-9]$/.test(key)) {
      event.preventDefault();
      pick(Number(key));
    } else if (actions[key]) {
      event.preventDefault();
      actions[key]();
    }
  });
  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-open-dialog]");
    if (opener) openDialog(opener.dataset.openDialog);
  });

  // --- Draft ------------------------------------------------------------------------------------
  // Everything typed or picked is kept in sessionStorage (this tab) until a save succeeds, so a
  // failed save, a reload or a visit to another item never loses it.
  function snapshot() {
    var data = {};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || el.name === "csrfmiddlewaretoken" || el.type === "submit") return;
      if (!(el.name in data)) data[el.name] = [];
      if (el.type === "radio" || el.type === "checkbox") {
        if (el.checked) data[el.name].push(el.value);
      } else {
        data[el.name].push(el.value);
      }
    });
    return data;
  }
  function apply(data) {
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name || !(el.name in data)) return;
      var values = data[el.name];
      if (el.type === "radio" || el.type === "checkbox") {
        el.checked = values.indexOf(el.value) >= 0;
      } else if (el.type !== "submit" && el.name !== "csrfmiddlewaretoken") {
        el.value = values[0] || "";
      }
    });
  }
  function same(a, b) { return JSON.stringify(a) === JSON.stringify(b); }
  function storeDraft() {
    try { sessionStorage.setItem(draftKey, JSON.stringify(snapshot())); } catch (e) { /* full or off */ }
  }
  function dropDraft() {
    try { sessionStorage.removeItem(draftKey); } catch (e) { /* off */ }
  }
  function restoreDraft() {
    var stored = null;
    try { stored = JSON.parse(sessionStorage.getItem(draftKey) || "null"); } catch (e) { stored = null; }
    if (!stored || same(stored, snapshot())) return;
    apply(stored);
    var note = document.createElement("p");
    note.className = "notice small draft-note";
    note.textContent = "Restored what you typed here before it was saved. ";
    var discard = document.createElement("button");
    discard.type = "button";
    discard.className = "link";
    discard.textContent = "Discard it";
    discard.addEventListener("click", function () {
      dropDraft();
      form.reset();
      note.remove();
      say("Draft discarded.");
    });
    note.appendChild(discard);
    form.insertBefore(note, errors.nextSibling);
    say("Restored your unsaved label of this item.");
  }

  if (form && draftKey) {
    form.addEventListener("input", storeDraft);
    form.addEventListener("change", storeDraft);
    restoreDraft();
  }

  // --- Saving -----------------------------------------------------------------------------------
  // htmx swaps no 4xx by default; a 400 here is the server's "not saved, and why", which goes in
  // the alert while every input stays as typed. Anything else is said in words.
  function fromForm(event) {
    // Swap events fire on the target (the alert), request events on the form itself.
    var config = event.detail.requestConfig;
    return form && (config ? config.elt : event.detail.elt) === form;
  }
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (!fromForm(event)) return;
    if (event.detail.xhr.status === 400) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (fromForm(event)) say("Saving…");
  });
  document.addEventListener("htmx:beforeOnLoad", function (event) {
    if (!fromForm(event)) return;
    var code = event.detail.xhr.status;
    if (code >= 200 && code < 300) {
      dropDraft(); // saved: the server sends the browser on to the next item
      say("Saved. Opening the next item…");
    }
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    if (fromForm(event) && event.detail.xhr.status === 400) say("Not saved: see why above the questions.");
  });
  document.addEventListener("htmx:responseError", function (event) {
    if (!fromForm(event)) return;
    var code = event.detail.xhr.status;
    var why = code === 403 || code === 404
      ? "you may no longer label this item (HTTP " + code + ")."
      : "the server failed (HTTP " + code + "). Try again in a moment; tell an admin if it stays.";
    alertError("Not saved: " + why + " What you typed is still here.");
    say("Not saved.");
  });
  document.addEventListener("htmx:sendError", function (event) {
    if (!fromForm(event)) return;
    alertError("Not saved: the server could not be reached. What you typed is still here (and kept in this tab); press Enter to try again.");
    say("Not saved.");
  });

  // --- Arrival ----------------------------------------------------------------------------------
  // Focus on the item's heading (or on why a save was refused), and read out the last save's
  // result, which the server put in a flash message above.
  var skipRefused = document.getElementById("skip-errors");
  var refused = skipRefused || (errors && errors.textContent.trim() ? errors : null);
  (refused || document.getElementById("item-heading")).focus();
  var flash = document.querySelector(".flash");
  if (flash && !refused) say(flash.textContent.trim());
})();
