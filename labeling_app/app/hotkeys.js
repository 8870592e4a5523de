// The labeling page's keyboard and image-click handling, installed once in the parent page
// (hotkeys.py). Reads two globals that the hotkey iframe refreshes on every run:
//   window.__artalignHotkeys  key -> button label
//   window.__artalignPick     the labels of the "left" and "right" buttons
// and the hidden task marker (#artalign-task: data-kind "pair" or "rank", data-token).
//
// Keys act wherever focus is (a select box or a radio button included), except while the
// rater types in a text box, a select box's list is open, or a slider takes arrow keys.
// On a ranking task: number keys set the rank of the focused image (outlined) and move the
// focus to the next image without a rank, arrow keys move the focus, Enter submits (the submit
// hotkey), Esc does nothing. A click on an image picks it in a pair and focuses it in a ranking.
(function () {
  var RANK_GROUP = "Rank of image ";
  var state = { token: null, focus: 0 };
  var TEXT_TYPES = ["text", "password", "email", "search", "number", "url", "tel"];
  var SLIDER_KEYS = ["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Home", "End"];

  function typing(t, key) {
    if (!t || !t.tagName) return false;
    if (t.isContentEditable || t.tagName === "TEXTAREA") return true;
    if (t.getAttribute("role") === "slider") return SLIDER_KEYS.indexOf(key) >= 0;
    if (t.tagName !== "INPUT") return false;
    if (t.getAttribute("role") === "combobox") return t.getAttribute("aria-expanded") === "true";
    return TEXT_TYPES.indexOf((t.type || "text").toLowerCase()) >= 0;
  }

  function task() {
    var m = document.getElementById("artalign-task");
    if (!m) return null;
    if (m.dataset.token !== state.token) state = { token: m.dataset.token, focus: 0 };
    return m.dataset;
  }

  function images() {
    var main = document.querySelector("[data-testid=stMain]");
    return main ? main.querySelectorAll("[data-testid=stImage] img") : [];
  }

  function rankGroups() {
    var out = [];
    document.querySelectorAll("[role=radiogroup]").forEach(function (g) {
      if ((g.getAttribute("aria-label") || "").indexOf(RANK_GROUP) === 0) out.push(g);
    });
    return out;
  }

  function ranked(group) {
    return group.querySelector("input:checked") !== null;
  }

  function clickButton(label) {
    var buttons = document.querySelectorAll("button");
    for (var i = 0; i < buttons.length; i++) {
      var text = (buttons[i].innerText || "").trim();
      if ((text === label || text.indexOf(label + " (") === 0) && !buttons[i].disabled) {
        buttons[i].click();
        return true;
      }
    }
    return false;
  }

  function paint() {
    var t = task();
    var imgs = images();
    for (var i = 0; i < imgs.length; i++) {
      var on = t && t.kind === "rank" && i === state.focus;
      imgs[i].style.outline = on ? "4px solid #ff4b4b" : "";
      imgs[i].style.outlineOffset = on ? "2px" : "";
      imgs[i].style.cursor = t ? "pointer" : "";
    }
  }

  function setRank(rank) {
    var groups = rankGroups();
    var group = groups[state.focus];
    if (!group || rank > groups.length) return false;
    var labels = group.querySelectorAll("label");
    for (var i = 0; i < labels.length; i++) {
      if ((labels[i].innerText || "").trim() === String(rank)) {
        labels[i].click();
        break;
      }
    }
    for (var step = 1; step < groups.length; step++) {
      var j = (state.focus + step) % groups.length;
      if (!ranked(groups[j])) {
        state.focus = j;
        break;
      }
    }
    return true;
  }

  function rankKey(key) {
    var n = rankGroups().length;
    if (/^[1-9]$/.test(key)) return setRank(parseInt(key, 10));
    if (key === "ArrowLeft" || key === "ArrowRight") {
      state.focus = (state.focus + (key === "ArrowLeft" ? n - 1 : 1)) % n;
      return true;
    }
    return key === "Escape"; // never clears a chosen rank
  }

  document.addEventListener(
    "keydown",
    function (e) {
      if (e.repeat || e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
      var key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
      if (typing(e.target, key)) return;
      var t = task();
      var label = (window.__artalignHotkeys || {})[key];
      var done = (t && t.kind === "rank" && rankGroups().length && rankKey(key)) || false;
      if (!done && label) done = clickButton(label);
      if (!done) return;
      e.preventDefault();
      e.stopPropagation();
      var a = document.activeElement;
      if (a && a !== document.body && a.blur) a.blur(); // keys stay with the page
      paint();
    },
    true
  );

  document.addEventListener(
    "click",
    function (e) {
      var t = task();
      var imgs = Array.prototype.slice.call(images());
      var i = imgs.indexOf(e.target);
      if (!t || i < 0) return;
      if (t.kind === "pair") {
        var pick = window.__artalignPick || [];
        if (pick[i]) clickButton(pick[i]);
      } else {
        state.focus = i;
        paint();
      }
    },
    true
  );

  // After a server restart the page reconnects without a run, so the new server has not bound
  // the buttons on screen and the next click or key would only start one. A run started here,
  // by the hidden reconnect button, binds them first.
  // The observer may deliver a drop and the reconnection in one batch, so a drop is read from
  // each record's old value, not from the attribute's value now.
  var lost = false;
  function watchConnection(records) {
    for (var i = 0; i < records.length; i++) {
      var r = records[i];
      if (r.attributeName === "data-test-connection-state" && r.oldValue === "CONNECTED") {
        lost = true;
      }
    }
    var app = document.querySelector("[data-testid=stApp]");
    if (!lost || !app || app.getAttribute("data-test-connection-state") !== "CONNECTED") return;
    lost = false;
    var button = document.querySelector(".st-key-artalign_reconnect button");
    if (button) button.click();
  }

  var queued = false;
  new MutationObserver(function (records) {
    watchConnection(records);
    if (queued) return;
    queued = true;
    window.requestAnimationFrame(function () {
      queued = false;
      paint();
    });
  }).observe(document.body, {
    childList: true,
    subtree: true,
    attributes: true,
    attributeOldValue: true,
    attributeFilter: ["data-test-connection-state"],
  });
})();
