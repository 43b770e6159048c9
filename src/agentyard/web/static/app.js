/* Agentyard dashboard: live runs over EventSource, elapsed times. No framework.
 *
 * A live run is an element [data-live] holding a .conversation[data-stream]. Its events are
 * appended to the DOM as they arrive (a text delta extends one text node), never re-rendered
 * as a whole, so that a run streaming thousands of events keeps the page responsive. Agent
 * text is only ever set as textContent; once the run finishes, the server's rendering of the
 * run (markdown rendered safely, the diff) replaces the live view.
 */
(function () {
  "use strict";

  var TOOL_TEXT_MAX = 20000;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function cut(text, max) {
    return text.length <= max ? text : text.slice(0, max - 1) + "\u2026";
  }

  function pretty(value) {
    if (value === null || value === undefined) return "";
    if (typeof value === "object" && !Array.isArray(value)) {
      var keys = Object.keys(value);
      if (keys.length === 1 && typeof value[keys[0]] === "string") value = value[keys[0]];
    }
    var text = typeof value === "string" ? value : JSON.stringify(value, null, 2);
    return cut(text, TOOL_TEXT_MAX);
  }

  function summaryOf(value) {
    if (value && typeof value === "object") {
      var keys = ["command", "cmd", "file_path", "path", "pattern", "url", "query"];
      for (var i = 0; i < keys.length; i++) {
        if (typeof value[keys[i]] === "string") { value = value[keys[i]]; break; }
      }
    }
    var text = typeof value === "string" ? value : JSON.stringify(value);
    return cut(String(text || "").split(/\s+/).join(" ").trim(), 120);
  }

  function inline(parent, text) {
    // `code` and **bold** only; everything else stays text (never parsed as HTML).
    var pattern = /(`[^`\n]+`|\*\*[^*\n]+\*\*)/g;
    var last = 0;
    var match;
    while ((match = pattern.exec(text)) !== null) {
      if (match.index > last) parent.appendChild(document.createTextNode(text.slice(last, match.index)));
      var token = match[0];
      if (token.charAt(0) === "`") parent.appendChild(el("code", null, token.slice(1, -1)));
      else parent.appendChild(el("strong", null, token.slice(2, -2)));
      last = match.index + token.length;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function format(box) {
    // A finished text block: fenced code as <pre>, paragraphs with minimal inline markup.
    var text = box.textContent;
    var holder = document.createDocumentFragment();
    text.split(/```[^\n]*\n?/).forEach(function (part, i) {
      if (i % 2 === 1) {
        holder.appendChild(el("pre", null, part.replace(/\n$/, "")));
        return;
      }
      part.split(/\n{2,}/).forEach(function (paragraph) {
        if (!paragraph.trim()) return;
        var p = el("p");
        inline(p, paragraph.replace(/^\n+|\n+$/g, ""));
        holder.appendChild(p);
      });
    });
    box.textContent = "";
    box.appendChild(holder);
    box.className = "text formatted";
  }

  function setStatus(root, status) {
    var badge = root.querySelector("[data-role=status]");
    if (badge) {
      badge.textContent = status;
      badge.className = "badge s-" + status;
    }
  }

  function runView(conv, onFinish) {
    var root = conv.closest("[data-live]") || conv.parentNode;
    var countEl = root.querySelector("[data-role=count]");
    var elapsedEl = root.querySelector("[data-role=elapsed]");
    var texts = {};
    var reasonings = {};
    var tools = {};
    var lastSeq = 0;
    var flushPending = false;
    var view = { finished: false };

    function flush() {
      flushPending = false;
      if (countEl) countEl.textContent = String(lastSeq);
    }

    function textNode(id) {
      var node = texts[id];
      if (!node) {
        var box = el("div", "text live");
        node = document.createTextNode("");
        box.appendChild(node);
        conv.appendChild(box);
        texts[id] = node;
      }
      return node;
    }

    function reasoningNode(id) {
      var node = reasonings[id];
      if (!node) {
        var box = el("details", "reasoning");
        box.appendChild(el("summary", null, "Reasoning"));
        var body = el("div", "text");
        node = document.createTextNode("");
        body.appendChild(node);
        box.appendChild(body);
        conv.appendChild(box);
        reasonings[id] = node;
      }
      return node;
    }

    function tool(id, name) {
      var row = tools[id];
      if (!row) {
        var box = el("details", "tool");
        var summary = el("summary");
        summary.appendChild(el("span", "tool-name", name || "tool"));
        summary.appendChild(document.createTextNode(" "));
        var inputLine = el("code", "tool-input");
        summary.appendChild(inputLine);
        box.appendChild(summary);
        var body = el("div", "tool-body");
        box.appendChild(body);
        conv.appendChild(box);
        row = tools[id] = { box: box, inputLine: inputLine, body: body };
      }
      return row;
    }

    function handle(e) {
      switch (e.type) {
        case "start":
          setStatus(root, "running");
          if (elapsedEl && e.startedAt) elapsedEl.dataset.started = e.startedAt;
          break;
        case "text-start":
          textNode(e.id);
          break;
        case "text-delta":
          textNode(e.id).appendData(e.delta || "");
          break;
        case "text-end":
          if (texts[e.id]) format(texts[e.id].parentNode);
          break;
        case "reasoning-start":
          reasoningNode(e.id);
          break;
        case "reasoning-delta":
          reasoningNode(e.id).appendData(e.delta || "");
          break;
        case "tool-call-start":
          tool(e.toolCallId, e.toolName);
          break;
        case "tool-input-available": {
          var row = tool(e.toolCallId, e.toolName);
          row.inputLine.textContent = summaryOf(e.input);
          row.body.appendChild(el("div", "label", "Input"));
          row.body.appendChild(el("pre", null, pretty(e.input)));
          break;
        }
        case "tool-output-available": {
          var done = tool(e.toolCallId, e.toolName);
          done.body.appendChild(el("div", "label", "Output"));
          done.body.appendChild(el("pre", "tool-output", pretty(e.output)));
          break;
        }
        case "files":
          conv.appendChild(el("p", "muted small", "Files changed: " + ((e.files || []).length)));
          break;
        case "error":
          conv.appendChild(el("p", "error", e.errorText || "error"));
          break;
        case "finish":
          view.finished = true;
          setStatus(root, e.status || "completed");
          onFinish();
          break;
        default:
          break;
      }
    }

    view.show = function (seq, data) {
      if (!isNaN(seq)) lastSeq = seq;
      handle(data);
      if (!flushPending) {
        flushPending = true;
        window.setTimeout(flush, 50);
      }
    };
    return view;
  }

  function parse(text) {
    try { return JSON.parse(text); } catch (err) { return null; }
  }

  function live(conv) {
    // One run: its own stream.
    if (conv.dataset.started) return;
    conv.dataset.started = "1";
    var source = new EventSource(conv.dataset.stream);
    var view = runView(conv, function () { source.close(); refresh(conv); });
    source.onmessage = function (message) {
      var data = parse(message.data);
      if (data) view.show(parseInt(message.lastEventId, 10), data);
    };
    source.onerror = function () {
      // The browser reconnects by itself, sending Last-Event-ID: the stream resumes after
      // the last event shown. Closed for good (204: the run is over): show the final state.
      if (source.readyState === EventSource.CLOSED && !view.finished) {
        view.finished = true;
        refresh(conv);
      }
    };
  }

  function liveGroup(box) {
    // A multi-agent task: every run on one stream (browsers open only six connections to a
    // server); each frame names its run's column, its id holds every run's last seq.
    if (box.dataset.started) return;
    box.dataset.started = "1";
    var source = new EventSource(box.dataset.groupStream);
    source.onmessage = function (message) {
      var data = parse(message.data);
      if (!data) return;
      var conv = box.querySelector('.conversation[data-index="' + data.run + '"]');
      if (!conv) return; // that column shows its final state already
      if (!conv.runView) conv.runView = runView(conv, function () { refresh(conv); });
      var seqs = message.lastEventId.split(".");
      conv.runView.show(parseInt(seqs[data.run], 10), data.event);
    };
    source.onerror = function () {
      if (source.readyState !== EventSource.CLOSED) return;
      box.querySelectorAll(".conversation[data-index]").forEach(function (conv) {
        refresh(conv);
      });
    };
  }

  function refresh(conv) {
    var url = conv.dataset.refresh;
    var target = document.getElementById(conv.dataset.target);
    if (!url || !target) return;
    fetch(url, { credentials: "same-origin", headers: { "HX-Request": "true" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (html === null) return;
        var holder = document.createElement("template");
        holder.innerHTML = html;
        var fresh = holder.content.firstElementChild;
        if (!fresh) return;
        target.replaceWith(fresh);
        if (window.htmx) window.htmx.process(fresh);
        start(fresh);
        document.body.dispatchEvent(new CustomEvent("run-finished", { bubbles: true }));
      })
      .catch(function () { /* the page still shows the live view; a reload shows the rest */ });
  }

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  function formatElapsed(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var h = Math.floor(seconds / 3600);
    var m = Math.floor((seconds % 3600) / 60);
    var s = seconds % 60;
    if (h) return h + "h " + pad(m) + "m";
    return m ? m + "m " + pad(s) + "s" : s + "s";
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-role=elapsed][data-started]").forEach(function (node) {
      if (node.dataset.completed) return;
      var root = node.closest("[data-live]");
      var badge = root && root.querySelector("[data-role=status]");
      var state = badge ? badge.textContent : "running";
      if (state !== "running" && state !== "queued") return;
      var seconds = (now - Date.parse(node.dataset.started)) / 1000;
      node.textContent = formatElapsed(seconds);
      var bar = root && root.querySelector("[data-role=progress]");
      if (bar && bar.dataset.expected) {
        bar.value = Math.min(99, Math.floor((100 * seconds) / parseFloat(bar.dataset.expected)));
      }
    });
  }

  function start(scope) {
    (scope || document).querySelectorAll(".conversation[data-stream]").forEach(live);
    if (scope && scope.matches && scope.matches(".conversation[data-stream]")) live(scope);
    (scope || document).querySelectorAll("[data-group-stream]").forEach(liveGroup);
  }

  document.addEventListener("DOMContentLoaded", function () {
    start(document);
    window.setInterval(tick, 1000);
  });
})();
