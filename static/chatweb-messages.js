// Acting on messages: copy a message's Markdown or a code block ("Copied"), edit a message in place,
// regenerate, continue, switch versions and delete, all sent over the page's socket through one hidden
// form; Esc stops a streaming reply and Up-arrow in an empty composer edits the last message you sent.
(function () {
  "use strict";

  function streaming() { return document.querySelector('#messages .message[data-status="streaming"]'); }

  // --- One form carries every message action over the socket (ws-send) -------------------
  function sendAction(action, messageId, text) {
    var form = document.getElementById("message-action-form");
    if (!form) return;
    form.elements.action.value = action;
    form.elements.message_id.value = messageId || "";
    form.elements.message.value = text || "";
    form.requestSubmit();
  }

  // A Delete's hx-confirm has been asked (and accepted) before this runs: chatweb-ui.js.
  function onActionButton(button) {
    rememberPlace(button.closest(".message"));
    sendAction(button.getAttribute("data-message-action"), button.getAttribute("data-message"));
  }

  // --- A new branch replaces the messages: keep the message acted on where it was on screen ------
  var place = null;
  function rememberPlace(article) {
    var scroller = document.getElementById("messages");
    if (!scroller || !article) return;
    place = article.getBoundingClientRect().top - scroller.getBoundingClientRect().top;
  }

  document.addEventListener("htmx:wsAfterMessage", function () {
    var marker = document.querySelector("#messages > [data-branch-anchor]");
    if (!marker) return;
    var anchor = document.getElementById("message-" + marker.getAttribute("data-branch-anchor"));
    var scroller = document.getElementById("messages");
    marker.remove();
    if (!anchor || !scroller) return;
    if (place === null) {
      anchor.scrollIntoView({block: "nearest"});
    } else {
      scroller.scrollTop += anchor.getBoundingClientRect().top - scroller.getBoundingClientRect().top - place;
    }
    place = null;
  });

  // --- Copying, with feedback on the button and for screen readers -----------------------
  function announce(text) {
    var status = document.getElementById("action-status");
    if (!status) {
      status = document.createElement("p");
      status.id = "action-status";
      status.className = "visually-hidden";
      status.setAttribute("role", "status");
      document.body.appendChild(status);
    }
    status.textContent = "";
    setTimeout(function () { status.textContent = text; }, 50);
  }

  function showCopied(button) {
    var label = button.querySelector(".copy-label");
    var before = label ? label.textContent : "";
    var title = button.getAttribute("title");
    var icon = button.querySelector("use");
    var href = icon ? icon.getAttribute("href") : "";
    button.classList.add("copied");
    if (label) label.textContent = "Copied";
    if (title) button.setAttribute("title", "Copied");
    if (icon) icon.setAttribute("href", href.replace(/#copy$/, "#check"));
    announce("Copied to the clipboard.");
    setTimeout(function () {
      button.classList.remove("copied");
      if (label) label.textContent = before;
      if (title) button.setAttribute("title", title);
      if (icon) icon.setAttribute("href", href);
    }, 2000);
  }

  function fetchText(url) {
    return fetch(url, {credentials: "same-origin"}).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.text();
    });
  }

  function copyText(textOrPromise, button) {
    var text = Promise.resolve(textOrPromise);
    var done = function () { showCopied(button); };
    var failed = function () { announce("Copying failed: the browser did not allow it."); };
    // A ClipboardItem can wait for text still being fetched and keeps the click's permission to copy.
    if (window.ClipboardItem && navigator.clipboard && navigator.clipboard.write) {
      var item = new ClipboardItem({"text/plain": text.then(function (t) { return new Blob([t], {type: "text/plain"}); })});
      navigator.clipboard.write([item]).then(done, function () {
        text.then(function (t) { return navigator.clipboard.writeText(t); }).then(done, failed);
      });
    } else if (navigator.clipboard) {
      text.then(function (t) { return navigator.clipboard.writeText(t); }).then(done, failed);
    } else {
      failed();
    }
  }

  // Each code block of a finished message gets a Copy button.
  function addCodeCopyButtons(root) {
    var scope = root && root.querySelectorAll ? root : document;
    scope.querySelectorAll(".message .markdown pre").forEach(function (pre) {
      if (pre.parentElement.classList.contains("code-block")) return;
      var wrap = document.createElement("div");
      wrap.className = "code-block";
      pre.parentNode.insertBefore(wrap, pre);
      wrap.appendChild(pre);
      var button = document.createElement("button");
      button.type = "button";
      button.className = "copy-code";
      button.setAttribute("data-copy-code", "");
      var label = document.createElement("span");
      label.className = "copy-label";
      label.textContent = "Copy code";
      button.appendChild(label);
      wrap.appendChild(button);
    });
  }

  // --- Editing a message in place --------------------------------------------------------
  function closeEditor(article) {
    var editor = article.querySelector(".message-editor");
    if (editor) editor.remove();
    article.classList.remove("editing");
  }

  function openEditor(article, url) {
    if (!article || article.classList.contains("editing")) return;
    article.classList.add("editing");
    var editor = document.createElement("div");
    editor.className = "message-editor";
    var assistant = article.classList.contains("assistant");
    var id = article.id.replace("message-", "");
    editor.innerHTML =
      '<label class="visually-hidden" for="edit-' + id + '">Edit the message</label>' +
      '<textarea id="edit-' + id + '" rows="4" maxlength="100000"></textarea>' +
      '<div class="notice" id="edit-notice" role="alert"></div>' +
      '<div class="editor-actions"><button type="button" class="primary" data-edit-save></button>' +
      '<button type="button" data-edit-cancel>Cancel</button></div>';
    editor.querySelector("[data-edit-save]").textContent = assistant ? "Save as a new version" : "Save and send";
    article.appendChild(editor);
    var textarea = editor.querySelector("textarea");
    textarea.disabled = true;
    fetchText(url).then(function (text) {
      textarea.value = text;
      textarea.disabled = false;
      textarea.focus();
      textarea.setSelectionRange(text.length, text.length);
    }, function () {
      editor.querySelector("#edit-notice").textContent = "This message could not be loaded. Reload the page.";
    });
  }

  function saveEditor(article) {
    var textarea = article.querySelector(".message-editor textarea");
    if (!textarea || textarea.disabled) return;
    rememberPlace(article);
    sendAction("edit", article.id.replace("message-", ""), textarea.value);
  }

  function markdownUrl(button) { return button.closest("[data-markdown]").getAttribute("data-markdown"); }

  function lastUserMessage() {
    var all = document.querySelectorAll("#messages > .message.user");
    return all.length ? all[all.length - 1] : null;
  }

  // --- Wiring ------------------------------------------------------------------------------
  document.addEventListener("click", function (event) {
    var target = event.target;
    var action = target.closest("[data-message-action]");
    if (action) { onActionButton(action); return; }
    var copyMessage = target.closest("[data-copy-message]");
    if (copyMessage) { copyText(fetchText(markdownUrl(copyMessage)), copyMessage); return; }
    var copyCode = target.closest("[data-copy-code]");
    if (copyCode) { copyText(copyCode.parentElement.querySelector("pre").innerText.replace(/\n$/, ""), copyCode); return; }
    var edit = target.closest("[data-edit-message]");
    if (edit) { openEditor(edit.closest(".message"), markdownUrl(edit)); return; }
    if (target.closest("[data-edit-save]")) { saveEditor(target.closest(".message")); return; }
    if (target.closest("[data-edit-cancel]")) {
      var article = target.closest(".message");
      closeEditor(article);
      var button = article.querySelector("[data-edit-message]");
      if (button) button.focus();
    }
  });

  // Runs before the menus' and the drawer's Escape (chatweb-ui.js), which keep theirs.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape" || event.defaultPrevented) return;
    if (document.querySelector("details.menu[open]") || document.querySelector(".layout.drawer-open")) return;
    var editing = event.target.closest && event.target.closest(".message.editing");
    if (editing) {
      event.preventDefault();
      closeEditor(editing);
      var button = editing.querySelector("[data-edit-message]");
      if (button) button.focus();
      return;
    }
    var stop = document.querySelector(".stop-form");
    if (stop && streaming()) {
      event.preventDefault();
      stop.requestSubmit();
    }
  }, true);

  document.addEventListener("keydown", function (event) {
    var target = event.target;
    if (target.matches && target.matches(".message-editor textarea") && event.key === "Enter"
        && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      saveEditor(target.closest(".message"));
      return;
    }
    if (target.id !== "composer-input" || event.key !== "ArrowUp" || target.value !== "") return;
    if (event.shiftKey || event.altKey || event.ctrlKey || event.metaKey || streaming()) return;
    var last = lastUserMessage();
    var button = last && last.querySelector("[data-edit-message]");
    if (!button) return;
    event.preventDefault();
    last.scrollIntoView({block: "nearest"});
    openEditor(last, markdownUrl(button));
  });

  if (window.htmx) htmx.onLoad(addCodeCopyButtons);
  document.addEventListener("DOMContentLoaded", function () { addCodeCopyButtons(document); });
})();
