// Attaching files in the composer: the paperclip button, drag-and-drop and paste. Each file is uploaded
// over HTTP (with the page's CSRF token) as soon as it is picked, with its progress shown; the server
// answers the chip to show (a thumbnail or the document's name, and a hidden field naming the upload for
// the send) or, when it refuses the file, the reason. Nothing here builds HTML from a file's name.
(function () {
  "use strict";

  function chips() { return document.getElementById("attachment-chips"); }
  function fileInput() { return document.getElementById("attachment-input"); }

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
    } catch (error) {
      return "";
    }
  }

  function fromHtml(html) {
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  }

  function errorChip(text) {
    var chip = document.createElement("li");
    chip.className = "attachment-chip failed";
    var message = document.createElement("span");
    message.className = "attachment-error";
    message.setAttribute("role", "alert");
    message.textContent = text;
    var remove = document.createElement("button");
    remove.type = "button";
    remove.className = "attachment-remove";
    remove.setAttribute("aria-label", "Dismiss");
    remove.textContent = "×";
    chip.append(message, remove);
    return chip;
  }

  function attachedCount() {
    var list = chips();
    return list ? list.querySelectorAll(".attachment-chip:not(.failed)").length : 0;
  }

  function upload(file) {
    var list = chips();
    var input = fileInput();
    if (!list || !input) return;
    var limit = parseInt(input.getAttribute("data-max-files"), 10) || 0;
    if (limit && attachedCount() >= limit) {
      list.append(errorChip("“" + file.name + "” was not attached: a message may have at most " + limit + " files."));
      return;
    }
    var chip = document.createElement("li");
    chip.className = "attachment-chip pending";
    var name = document.createElement("span");
    name.className = "attachment-name";
    name.textContent = file.name;
    var progress = document.createElement("progress");
    progress.max = 100;
    progress.value = 0;
    progress.setAttribute("aria-label", "Uploading " + file.name);
    chip.append(name, progress);
    list.append(chip);

    var data = new FormData();
    data.append("file", file);
    data.append("name", file.name);
    var request = new XMLHttpRequest();
    request.open("POST", input.getAttribute("data-upload-url"));
    request.setRequestHeader("X-CSRFToken", csrfToken());
    request.upload.addEventListener("progress", function (event) {
      if (event.lengthComputable) progress.value = Math.round((event.loaded / event.total) * 100);
    });
    request.addEventListener("load", function () {
      var answer = request.status === 200 || request.status === 400 ? fromHtml(request.responseText) : null;
      chip.replaceWith(answer || errorChip("“" + file.name + "” could not be uploaded (error " + request.status + ")."));
    });
    request.addEventListener("error", function () {
      chip.replaceWith(errorChip("“" + file.name + "” could not be uploaded: the connection failed."));
    });
    request.send(data);
  }

  function uploadAll(files) {
    for (var i = 0; i < files.length; i++) upload(files[i]);
  }

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-attach]")) {
      var input = fileInput();
      if (input) input.click();
      return;
    }
    var remove = event.target.closest(".attachment-remove");
    if (!remove) return;
    var chip = remove.closest(".attachment-chip");
    var url = remove.getAttribute("data-remove-url");
    if (url) fetch(url, {method: "POST", headers: {"X-CSRFToken": csrfToken()}, credentials: "same-origin"});
    if (chip) chip.remove();
    var box = document.getElementById("composer-input");
    if (box) box.focus();
  });

  document.addEventListener("change", function (event) {
    if (event.target.id !== "attachment-input") return;
    uploadAll(event.target.files);
    event.target.value = "";
  });

  document.addEventListener("paste", function (event) {
    if (event.target.id !== "composer-input" || !event.clipboardData) return;
    var files = event.clipboardData.files;
    if (!files || !files.length) return;
    if (event.clipboardData.types.indexOf("text/plain") === -1) event.preventDefault();
    uploadAll(files);
  });

  function composerOf(event) {
    return event.target.closest && event.target.closest("#composer-form");
  }

  document.addEventListener("dragover", function (event) {
    var form = composerOf(event);
    if (!form || !event.dataTransfer || event.dataTransfer.types.indexOf("Files") === -1) return;
    event.preventDefault();
    form.classList.add("dropping");
  });
  document.addEventListener("dragleave", function (event) {
    var form = composerOf(event);
    if (form && !form.contains(event.relatedTarget)) form.classList.remove("dropping");
  });
  document.addEventListener("drop", function (event) {
    var form = composerOf(event);
    if (!form || !event.dataTransfer || !event.dataTransfer.files.length) return;
    event.preventDefault();
    form.classList.remove("dropping");
    uploadAll(event.dataTransfer.files);
  });

  // A message is not sent while one of its files is still uploading: it would go without it.
  document.addEventListener("submit", function (event) {
    if (event.target.id !== "composer-form" || !event.target.querySelector(".attachment-chip.pending")) return;
    event.preventDefault();
    event.stopPropagation();
    var notice = document.getElementById("composer-notice");
    if (notice) notice.textContent = "Wait for the files to finish uploading, then send.";
  }, true);

  // Failed chips go when a message is sent; the server clears the attached ones.
  document.addEventListener("htmx:wsAfterSend", function () {
    var list = chips();
    if (list) list.querySelectorAll(".attachment-chip.failed").forEach(function (chip) { chip.remove(); });
  });
})();
