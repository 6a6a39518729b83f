// The little the chat page needs beyond htmx: Enter to send, focus, scrolling, connection state.
(function () {
  "use strict";

  function nearBottom(el) {
    return el.scrollHeight - el.scrollTop - el.clientHeight < 120;
  }

  document.addEventListener("keydown", function (event) {
    var input = event.target;
    if (input.id !== "composer-input" || event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    event.preventDefault();
    if (input.value.trim() || input.form.querySelector("input[name=attachments]")) input.form.requestSubmit();
  });

  var stickToBottom = true;
  document.addEventListener("htmx:wsBeforeMessage", function () {
    var scroller = document.getElementById("messages");
    stickToBottom = !scroller || nearBottom(scroller);
  });
  document.addEventListener("htmx:wsAfterMessage", function () {
    var scroller = document.getElementById("messages");
    if (scroller && stickToBottom) scroller.scrollTop = scroller.scrollHeight;
  });
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    if (event.detail.target && event.detail.target.id === "composer-input") {
      var input = document.getElementById("composer-input");
      if (input) input.focus();
    }
  });

  // A socket that (re)connects (after a worker or Redis restart) names the replies this page shows
  // as streaming now, not those of the page load, so replies that ended meanwhile are sent whole.
  if (window.htmx) {
    htmx.createWebSocket = function (url) {
      var target = new URL(url, location.href);
      var streaming = [];
      document.querySelectorAll('#messages article[data-status="streaming"]').forEach(function (article) {
        streaming.push(article.id.replace("message-", ""));
      });
      target.searchParams.set("streaming", streaming.join(","));
      // And the branch it shows (its last message): another tab may have switched it meanwhile.
      var last = document.querySelector("#messages > article.message:last-of-type");
      target.searchParams.set("leaf", last ? last.id.replace("message-", "") : "");
      var socket = new WebSocket(target.toString(), []);
      socket.binaryType = htmx.config.wsBinaryType;
      return socket;
    };
  }

  function setConnection(text) {
    var el = document.getElementById("connection");
    if (el) el.textContent = text;
  }
  document.addEventListener("htmx:wsOpen", function () { setConnection(""); });
  document.addEventListener("htmx:wsClose", function (event) {
    var code = event.detail.event && event.detail.event.code;
    var text = "Connection lost. Reconnecting…";
    if (code === 4401 || code === 4404) text = "This conversation is not available. Reload the page.";
    else if (code === 4503) {
      // The server is up but its database or Redis is not: try again shortly (htmx only retries 1006/1011-1013).
      text = "The server cannot reach its database or message service just now. Reconnecting…";
      var socket = event.detail.socketWrapper;
      setTimeout(function () { socket.reconnect(); }, 1000 + Math.random() * 2000);
    }
    setConnection(text);
  });

  document.addEventListener("DOMContentLoaded", function () {
    var scroller = document.getElementById("messages");
    if (scroller) scroller.scrollTop = scroller.scrollHeight;
    var input = document.getElementById("composer-input");
    if (input) input.focus();
  });
})();
