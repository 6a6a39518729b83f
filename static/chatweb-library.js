// Finding and keeping conversations: keep the open conversation in view in the sidebar, land on a
// search result's message, toggle selection for bulk actions, and confirm destructive bulk actions.
(function () {
  "use strict";

  function currentIntoView() {
    var current = document.querySelector("#conversations .conversation-link.current");
    if (current) current.scrollIntoView({ block: "nearest" });
  }

  // A search result opens the page at #message-<id>: show it once the chat has scrolled to the end.
  function landOnMessage() {
    var match = /^#message-\d+$/.test(location.hash) && document.querySelector(location.hash);
    if (match) match.scrollIntoView({ block: "center" });
  }

  document.addEventListener("DOMContentLoaded", function () {
    currentIntoView();
    requestAnimationFrame(landOnMessage);
  });

  document.addEventListener("click", function (event) {
    var toggle = event.target.closest("[data-select-toggle]");
    if (toggle) {
      var sidebar = document.getElementById("sidebar");
      var on = sidebar.classList.toggle("selecting");
      toggle.setAttribute("aria-pressed", on ? "true" : "false");
      if (!on) sidebar.querySelectorAll(".select-box:checked").forEach(function (box) { box.checked = false; });
      return;
    }
    var confirmed = event.target.closest("button[data-confirm]");
    if (confirmed && !window.confirm(confirmed.getAttribute("data-confirm"))) event.preventDefault();
  });

  // Escape in the search box clears it and brings the list back.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || event.target.id !== "search-input" || !event.target.value) return;
    event.target.value = "";
    var results = document.getElementById("search-results");
    if (results) results.innerHTML = "";
    event.stopPropagation();
  }, true);
})();
