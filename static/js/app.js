// The little the pages need beyond htmx: Enter to send, a waiting clock, copy buttons, and line
// numbers for the custom_inputs editor. No framework, no build step.
(function () {
  "use strict";

  // Enter sends, Shift+Enter breaks the line (the composer's message box).
  document.addEventListener("keydown", function (event) {
    var box = event.target;
    if (box.id !== "message" || event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    event.preventDefault();
    if (box.value.trim() && !customInputsInvalid()) box.form.requestSubmit();
  });

  function customInputsInvalid() {
    var status = document.getElementById("custom-inputs-status");
    return status && status.dataset.valid === "false";
  }

  // Nothing is sent while custom_inputs are invalid: say why instead.
  document.addEventListener("htmx:confirm", function (event) {
    if (event.target.id !== "composer" || !customInputsInvalid()) return;
    event.preventDefault();
    document.getElementById("custom-inputs-editor").open = true;
    document.getElementById("composer-error").textContent =
      "Fix custom_inputs first: " + document.getElementById("custom-inputs-status").textContent.trim();
  });

  // "Waiting for the agent… N s", and after a few seconds the scale-from-zero hint. Shared with
  // stream.js, which shows it until the first token arrives.
  var clock = null;
  function startWaiting() {
    document.getElementById("composer-error").textContent = "";
    var waiting = document.getElementById("waiting");
    var started = Date.now();
    waiting.querySelector("[data-elapsed]").textContent = "0";
    waiting.querySelector("[data-cold]").hidden = true;
    waiting.classList.add("waiting--on");
    clearInterval(clock);
    clock = setInterval(function () {
      var seconds = Math.floor((Date.now() - started) / 1000);
      waiting.querySelector("[data-elapsed]").textContent = String(seconds);
      if (seconds >= 5) waiting.querySelector("[data-cold]").hidden = false;
    }, 250);
  }
  function stopWaiting() {
    clearInterval(clock);
    document.getElementById("waiting").classList.remove("waiting--on");
  }
  // A fresh idempotency key for the next message (the last one was sent and answered).
  function newTurnKey() {
    var field = document.getElementById("idempotency-key");
    if (!field) return;
    field.value = window.crypto && crypto.randomUUID ? crypto.randomUUID()
      : String(Date.now()) + "-" + Math.random().toString(16).slice(2);
  }
  window.reviewApp = {startWaiting: startWaiting, stopWaiting: stopWaiting,
                      newTurnKey: newTurnKey, customInputsInvalid: customInputsInvalid};
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (event.target.id === "composer") startWaiting();
  });
  // 503: the app carries as many messages as it may. The server's own (escaped) fragment says
  // so and when to try again; htmx leaves 5xx answers unswapped unless told.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var config = event.detail.requestConfig;
    if (!config || config.elt.id !== "composer" || event.detail.xhr.status !== 503) return;
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    if (event.target.id !== "composer") return;
    stopWaiting();
    var swappedTurn = event.detail.successful && !event.detail.xhr.getResponseHeader("HX-Retarget");
    if (swappedTurn) {
      window.reviewApp.newTurnKey();
      var box = document.getElementById("message");
      box.value = "";
      box.focus();
    }
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.target.id === "messages") event.target.lastElementChild?.scrollIntoView({block: "nearest"});
  });

  // Copy buttons: data-copy="id of the element whose text to copy" (an id, not a selector:
  // request ids may hold characters that selectors treat specially).
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.getElementById(button.dataset.copy);
    if (!source || !navigator.clipboard) return;
    var label = button.textContent;
    function say(text) {
      button.textContent = text;
      setTimeout(function () { button.textContent = label; }, 1500);
    }
    navigator.clipboard.writeText(source.textContent).then(
      function () { say("Copied"); },
      function (error) { button.title = String(error); say("Copy failed"); }
    );
  });

  // Line numbers beside the custom_inputs textarea, so "line 3, column 5" can be found.
  function renumber(textarea) {
    var gutter = textarea.parentElement.querySelector(".gutter");
    if (!gutter) return;
    var lines = textarea.value.split("\n").length;
    var numbers = [];
    for (var i = 1; i <= lines; i++) numbers.push(i);
    gutter.textContent = numbers.join("\n");
    gutter.scrollTop = textarea.scrollTop;
  }
  document.addEventListener("input", function (event) {
    if (event.target.id === "custom-inputs") renumber(event.target);
  });
  document.addEventListener("scroll", function (event) {
    if (event.target.id === "custom-inputs") renumber(event.target);
  }, true);
  document.addEventListener("DOMContentLoaded", function () {
    var editor = document.getElementById("custom-inputs");
    if (editor) renumber(editor);
  });
})();
