// The page's furniture: confirmations, the drawer on narrow screens, menus, the theme switch, copying
// a new key, keeping the reading position when earlier messages load, and "Jump to latest" while a
// reply streams. No page has inline script (the Content-Security-Policy forbids it): all of this is
// attached here, by listeners on the document.
(function () {
  "use strict";

  var root = document.documentElement;

  // --- Confirmations: hx-confirm="Question?" on the control that does it -------------------
  // htmx asks itself for controls that make an htmx request; for the others (a plain form's submit
  // button, a message action sent over the socket) this asks, before any other click listener and
  // before the form is submitted: a "Cancel" stops both.
  var HTMX_REQUEST = "[hx-get],[hx-post],[hx-put],[hx-patch],[hx-delete]";
  document.addEventListener("click", function (event) {
    var control = event.target.closest && event.target.closest("[hx-confirm]");
    if (!control || control.tagName === "FORM" || control.matches(HTMX_REQUEST)) return;
    if (window.confirm(control.getAttribute("hx-confirm"))) return;
    event.preventDefault();
    event.stopImmediatePropagation();
  }, true);

  // --- Drawer (below 768 px the sidebar slides over the chat) ---------------------------
  function layout() { return document.getElementById("layout"); }
  function menuButton() { return document.querySelector("[data-drawer-open]"); }

  var narrow = window.matchMedia("(max-width: 767.98px)");

  // While the drawer is open, the chat behind it is out of reach (inert) until it closes.
  function setChatInert(inert) {
    var chat = document.getElementById("chat");
    if (chat) chat.inert = inert;
  }

  function openDrawer() {
    var el = layout();
    if (!el) return;
    el.classList.add("drawer-open");
    setChatInert(true);
    var button = menuButton();
    if (button) button.setAttribute("aria-expanded", "true");
    var first = document.querySelector("#sidebar .new-chat");
    if (first) first.focus();
  }

  function closeDrawer() {
    var el = layout();
    if (!el || !el.classList.contains("drawer-open")) return;
    el.classList.remove("drawer-open");
    setChatInert(false);
    var button = menuButton();
    if (button) {
      button.setAttribute("aria-expanded", "false");
      button.focus();
    }
  }

  narrow.addEventListener("change", function () { if (!narrow.matches) closeDrawer(); });

  // --- Menus (<details class="menu">): one open at a time, closed by a click outside or Escape.
  function closeMenus(except) {
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      if (menu !== except) menu.removeAttribute("open");
    });
  }

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (target.closest("[data-drawer-open]")) { openDrawer(); return; }
    if (target.closest("[data-drawer-close]")) { closeDrawer(); return; }
    closeMenus(target.closest("details.menu"));

    var themeButton = target.closest(".theme-switch button[name=theme]");
    if (themeButton) applyTheme(themeButton);

    var copyButton = target.closest("[data-copy]");
    if (copyButton) copyFrom(copyButton);

    var selectable = target.closest("input[data-select-on-click]");
    if (selectable) selectable.select();

    if (target.closest("#jump-latest")) jumpToLatest();
  });

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    var open = document.querySelector("details.menu[open]");
    if (open) {
      open.removeAttribute("open");
      open.querySelector("summary").focus();
    } else {
      closeDrawer();
    }
  });

  // --- Theme: shown at once; the form (htmx) keeps the choice on the server -------------
  function applyTheme(button) {
    var theme = button.value;
    if (theme === "system") root.removeAttribute("data-theme");
    else root.setAttribute("data-theme", theme);
    button.closest(".theme-switch").querySelectorAll("button[name=theme]").forEach(function (other) {
      other.setAttribute("aria-pressed", other === button ? "true" : "false");
    });
  }

  // --- Copy a new API key ---------------------------------------------------------------
  function copyFrom(button) {
    var input = document.getElementById(button.getAttribute("data-copy"));
    if (!input) return;
    var done = function () {
      button.querySelector(".copy-label").textContent = "Copied";
      var status = document.getElementById("copy-status");
      if (status) status.textContent = "Copied to the clipboard.";
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(done, function () { selectAndCopy(input, done); });
    } else {
      selectAndCopy(input, done);
    }
  }

  function selectAndCopy(input, done) {
    input.focus();
    input.select();
    if (document.execCommand("copy")) done();
  }

  // --- Long conversations ---------------------------------------------------------------
  function scroller() { return document.getElementById("messages"); }
  function nearBottom(el) { return el.scrollHeight - el.scrollTop - el.clientHeight < 120; }

  // Earlier messages go in above what is being read: keep its distance from the bottom.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var el = scroller();
    var source = event.detail.elt;
    if (!el || !source || !source.classList.contains("earlier")) return;
    var fromBottom = el.scrollHeight - el.scrollTop;
    requestAnimationFrame(function () { el.scrollTop = el.scrollHeight - fromBottom; });
  });

  function updateJump() {
    var el = scroller();
    var button = document.getElementById("jump-latest");
    if (!el || !button) return;
    var streaming = el.querySelector(".message[data-status=streaming]");
    button.hidden = !streaming || nearBottom(el);
  }

  function jumpToLatest() {
    var el = scroller();
    if (el) el.scrollTop = el.scrollHeight;
    updateJump();
  }

  document.addEventListener("scroll", function (event) {
    if (event.target === scroller()) updateJump();
  }, true);
  document.addEventListener("htmx:wsAfterMessage", function () { requestAnimationFrame(updateJump); });
})();
