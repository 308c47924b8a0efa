// What every page shares around its data: the API key gate and the live indicator.
//
// Each page's HTML holds the same key panel (#key-panel, #key-form, #key-input, #key-problem)
// and top bar (#forget-key, #live). The key, once given, stays in the tab's session storage,
// so moving between pages does not ask again.

import { ApiError, forgetKey, getKey, problemView, setKey, takeKeyFromFragment } from "./api.js";
import { fill } from "./dom.js";

const $ = (id) => document.getElementById(id);

export function keyGate({ content, onStart, onStop }) {
  const ask = (problem) => {
    $("key-panel").hidden = false;
    $(content).hidden = true;
    $("forget-key").hidden = true;
    fill($("key-problem"), problem || null);
    $("key-input").focus();
  };
  const open = () => {
    $("key-panel").hidden = true;
    $("forget-key").hidden = false;
    fill($("key-problem"));
    onStart();
  };
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    setKey(key);
    $("key-input").value = "";
    open();
  });
  $("forget-key").addEventListener("click", () => {
    forgetKey();
    onStop();
    ask();
  });
  takeKeyFromFragment();
  // A link with another key opened in this tab only changes the fragment: start afresh.
  window.addEventListener("hashchange", () => {
    if (takeKeyFromFragment()) location.reload();
  });
  return {
    begin() {
      if (getKey()) open();
      else ask();
    },
    // A refused key (401): forget it and ask again. True when that is what happened.
    refused(err) {
      if (!(err instanceof ApiError && err.status === 401)) return false;
      forgetKey();
      onStop();
      ask(problemView(err, { context: "The API refused the key" }));
      return true;
    },
  };
}

const MODES = {
  streaming: "Live: following the event stream",
  polling: "Live: refreshing every few seconds",
  reconnecting: "Live: reconnecting…",
  error: "Connection problem: retrying",
};

export function showMode(mode, texts = {}) {
  const el = $("live");
  el.dataset.mode = mode;
  el.textContent = texts[mode] ?? MODES[mode] ?? "";
}
