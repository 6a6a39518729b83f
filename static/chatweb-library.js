// Finding and keeping conversations: keep the open conversation in view in the sidebar, land on a
// search result's message, and toggle selection for bulk actions (their confirmations: chatweb-ui.js).
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
    }
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

// The zip of every conversation: downloaded by fetch so the page can show how far it has got (the
// server sends an estimate of the size), then handed to the browser as a file.
(function () {
  "use strict";

  function megabytes(bytes) {
    return bytes < 1048576 ? Math.max(1, Math.round(bytes / 1024)) + " kB" : (bytes / 1048576).toFixed(1) + " MB";
  }

  document.addEventListener("click", function (event) {
    var link = event.target.closest("a[data-export-progress]");
    if (!link || !window.fetch || !window.ReadableStream) return;
    event.preventDefault();
    var status = document.getElementById(link.getAttribute("data-export-progress"));
    status.textContent = "Preparing the export…";
    fetch(link.href, { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) throw new Error("The server answered " + response.status + ".");
      var estimate = parseInt(response.headers.get("X-Export-Estimate") || "0", 10);
      var reader = response.body.getReader();
      var chunks = [];
      var received = 0;
      function pump() {
        return reader.read().then(function (step) {
          if (step.done) return;
          chunks.push(step.value);
          received += step.value.length;
          var share = estimate ? Math.min(99, Math.round(100 * received / estimate)) : null;
          status.textContent = "Downloading… " + megabytes(received) + (share !== null ? " (about " + share + " %)" : "");
          return pump();
        });
      }
      return pump().then(function () {
        var name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "");
        var url = URL.createObjectURL(new Blob(chunks, { type: "application/zip" }));
        var save = document.createElement("a");
        save.href = url;
        save.download = name ? name[1] : "chatweb-conversations.zip";
        document.body.appendChild(save);
        save.click();
        save.remove();
        setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
        status.textContent = "Done: " + megabytes(received) + " downloaded.";
      });
    }).catch(function (error) {
      status.textContent = "The export failed: " + error.message + " Try again.";
    });
  });
})();
