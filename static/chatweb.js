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
    if (input.value.trim()) input.form.requestSubmit();
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

  function setConnection(text) {
    var el = document.getElementById("connection");
    if (el) el.textContent = text;
  }
  document.addEventListener("htmx:wsOpen", function () { setConnection(""); });
  document.addEventListener("htmx:wsClose", function (event) {
    var code = event.detail.event && event.detail.event.code;
    setConnection(code === 4401 || code === 4404 ? "This conversation is not available. Reload the page." : "Connection lost. Reconnecting…");
  });

  document.addEventListener("DOMContentLoaded", function () {
    var scroller = document.getElementById("messages");
    if (scroller) scroller.scrollTop = scroller.scrollHeight;
    var input = document.getElementById("composer-input");
    if (input) input.focus();
  });
})();
