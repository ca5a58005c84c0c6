// Streaming turns: the composer of a streaming deployment posts with fetch and reads the
// server-sent events of agents.chat_views.chat_stream as they arrive: `delta` {text} grows the
// answer (as text: it is rendered as sanitized markdown by the server once complete), `item`
// {html} adds a tool call or reasoning step, `done` {html} swaps in the finished turn, `error`
// {message}. Stop aborts the fetch; the server keeps the partial answer, which is then fetched.
(function () {
  "use strict";

  var current = null; // {controller, placeholder, key, isNew}

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.id !== "composer" || !form.dataset.streamUrl) return;
    event.preventDefault();
    if (current) return; // one turn at a time; the key also guards the server side
    var app = window.reviewApp;
    if (app.customInputsInvalid()) {
      document.getElementById("custom-inputs-editor").open = true;
      document.getElementById("composer-error").textContent = "Fix custom_inputs first: " +
        document.getElementById("custom-inputs-status").textContent.trim();
      return;
    }
    var box = document.getElementById("message");
    if (!box.value.trim()) return;
    send(form, box.value);
  });

  document.addEventListener("click", function (event) {
    if (event.target.id === "stop" && current) current.controller.abort();
  });

  function send(form, message) {
    var app = window.reviewApp;
    var data = new FormData(form);
    var isNew = !data.get("conversation_id");
    var placeholder = makePlaceholder(message);
    document.getElementById("no-messages")?.remove();
    document.getElementById("messages").appendChild(placeholder);
    placeholder.scrollIntoView({block: "nearest"});
    current = {controller: new AbortController(), placeholder: placeholder,
               key: data.get("idempotency_key"), isNew: isNew, form: form};
    setBusy(form, true);
    app.startWaiting();
    fetch(form.dataset.streamUrl, {method: "POST", body: data, signal: current.controller.signal,
                                   headers: {"Accept": "text/event-stream"}})
      .then(function (response) {
        var type = response.headers.get("content-type") || "";
        if (!type.startsWith("text/event-stream")) {
          return response.text().then(function (html) { refused(html, response.status); });
        }
        return readEvents(response.body.getReader());
      })
      .catch(function (error) {
        if (error.name === "AbortError") return fetchStoredTurn(0);
        failed("The connection to the app was lost: " + error.message);
      })
      .finally(function () {
        app.stopWaiting();
        setBusy(form, false);
      });
  }

  function makePlaceholder(message) {
    var turn = document.createElement("article");
    turn.className = "turn turn--streaming";
    var user = document.createElement("div");
    user.className = "msg msg--user";
    user.textContent = message;
    var items = document.createElement("div");
    items.className = "output-items";
    var answer = document.createElement("div");
    answer.className = "msg msg--assistant streaming";
    answer.setAttribute("aria-busy", "true");
    answer.setAttribute("data-streaming-answer", "");
    turn.append(user, items, answer);
    return turn;
  }

  function setBusy(form, busy) {
    form.querySelector("button[type=submit]").disabled = busy;
    document.getElementById("stop").hidden = !busy;
    if (!busy) current = null;
  }

  function readEvents(reader) {
    var decoder = new TextDecoder();
    var buffer = "";
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) return;
        buffer += decoder.decode(chunk.value, {stream: true});
        var end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          handle(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
        return pump();
      });
    }
    return pump();
  }

  function handle(block) {
    var name = "message", data = [];
    block.split("\n").forEach(function (line) {
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    });
    if (!data.length || !current) return;
    var payload = JSON.parse(data.join("\n"));
    var turn = current.placeholder;
    if (name === "delta") {
      window.reviewApp.stopWaiting();
      turn.querySelector("[data-streaming-answer]").append(document.createTextNode(payload.text));
    } else if (name === "item") {
      window.reviewApp.stopWaiting();
      turn.querySelector(".output-items").insertAdjacentHTML("beforeend", payload.html);
    } else if (name === "done") {
      finished(payload.html, payload.url);
    } else if (name === "error") {
      failed(payload.message);
    }
  }

  function finished(html, url) {
    var placeholder = current.placeholder;
    // htmx.swap also applies the fragment's out-of-band parts (conversation id and list).
    htmx.swap(placeholder, html, {swapStyle: "outerHTML"});
    if (url) history.pushState({}, "", url);
    window.reviewApp.newTurnKey();
    var box = document.getElementById("message");
    box.value = "";
    box.focus();
    document.getElementById("messages").lastElementChild?.scrollIntoView({block: "nearest"});
  }

  function refused(html, status) {
    current.placeholder.remove();
    var error = document.getElementById("composer-error");
    if (status === 422 || status === 503) error.innerHTML = html; // our own escaped fragment
    else error.textContent = "The app refused the message (HTTP " + status + ").";
  }

  function failed(message) {
    current.placeholder.remove();
    document.getElementById("composer-error").textContent = message;
  }

  // After Stop the server saves what arrived; ask for that turn by its key until it is there.
  function fetchStoredTurn(attempt) {
    var state = current;
    var form = state.form;
    var url = form.dataset.turnUrl + "?key=" + encodeURIComponent(state.key) +
      (state.isNew ? "&new=1" : "");
    return fetch(url, {headers: {"HX-Request": "true"}}).then(function (response) {
      if (response.ok) {
        return response.text().then(function (html) {
          current = state;
          finished(html, "");
          if (state.isNew) {
            var id = document.getElementById("conversation-id").value;
            if (id) history.pushState({}, "", location.pathname + "?c=" + id);
          }
        });
      }
      if (attempt < 20) {
        return new Promise(function (resolve) { setTimeout(resolve, 250); })
          .then(function () { current = state; return fetchStoredTurn(attempt + 1); });
      }
      current = state;
      failed("Stopped. The partial answer could not be loaded; reload the page to see it.");
    });
  }
})();
