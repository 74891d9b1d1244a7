// The labelling page: hotkeys, playback speed, submit over the JSON API and load the next clip at once.
(function () {
  "use strict";
  const form = document.getElementById("judge-form");
  if (!form) return;
  const player = document.getElementById("player");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const statusEl = document.getElementById("status");
  const submitBtn = document.getElementById("submit");
  const speed = document.getElementById("speed");
  const skipBtn = document.getElementById("skip");
  const flags = document.getElementById("flags");
  const shortcuts = document.getElementById("shortcuts");
  const boot = JSON.parse(document.getElementById("boot").textContent);
  let item = boot.item;
  let shownAt = performance.now();
  let busy = false;

  function requestId() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 12);
  }

  function say(text, isError) {
    statusEl.textContent = text || "";
    statusEl.classList.toggle("error", !!isError);
  }

  function showProgress(p) {
    if (!p) return;
    document.getElementById("done-today").textContent = p.done_today;
    document.getElementById("remaining").textContent = p.remaining_today;
    document.getElementById("total").textContent = p.total_done;
    const q = p.qualification;
    if (q) document.getElementById("q-count").textContent = q.answered + "/" + q.required;
  }

  function resetForm() {
    form.reset();
    document.getElementById("client_request_id").value = requestId();
    document.getElementById("flags").open = false;
    document.querySelectorAll(".label-btn.selected").forEach((b) => b.classList.remove("selected"));
  }

  // Why nothing comes; a failed qualification round says from when it may be retaken, in the
  // viewer's own time zone (the server's reason names it in UTC), instead of "Check again".
  function showBlocked(progress) {
    const message = document.getElementById("empty-message");
    const q = progress.qualification;
    const failed = q && q.passed === false;
    document.getElementById("check-again").hidden = failed;
    message.textContent = progress.blocked_reason;
    if (!failed || !q.retake_at) return;
    const at = new Date(q.retake_at);
    if (isNaN(at)) return;
    const time = document.createElement("time");
    time.dateTime = q.retake_at;
    time.textContent = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" }).format(at);
    message.textContent = "Qualification not passed (" + q.correct + " of " + q.answered + " right). You can retake it from ";
    message.append(time, ".");
  }

  function showItem(next, progress) {
    item = next;
    showProgress(progress);
    resetForm();
    const empty = document.getElementById("empty");
    if (!item) {
      player.pause();
      player.removeAttribute("src");
      player.innerHTML = "";
      player.hidden = true;
      empty.hidden = false;
      if (progress && progress.blocked_reason) showBlocked(progress);
      submitBtn.disabled = skipBtn.disabled = true;
      document.getElementById("assignment_id").value = "";
      return;
    }
    document.getElementById("assignment_id").value = item.assignment_id;
    document.getElementById("qualification").hidden = !item.is_qualification;
    player.innerHTML = "";
    for (const s of item.sources) {
      const source = document.createElement("source");
      source.src = s.src;
      source.type = s.type;
      player.appendChild(source);
    }
    player.hidden = false;
    empty.hidden = true;
    submitBtn.disabled = skipBtn.disabled = false;
    player.load();
    player.defaultPlaybackRate = player.playbackRate = parseFloat(speed.value); // the speed carries over
    player.play().catch(() => {}); // autoplay with sound may need a first click or key
    shownAt = performance.now();
  }

  async function api(method, url, body) {
    const response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: Object.assign({ "Accept": "application/json", "X-CSRF-Token": csrf },
                             body ? { "Content-Type": "application/json" } : {}),
      body: body ? JSON.stringify(body) : undefined,
    });
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const err = new Error((data && data.detail) || ("HTTP " + response.status));
      err.status = response.status;
      // The guidelines changed (or were never confirmed): the server says where to read them.
      // Nothing else runs after: a retry or a next-clip request would only abort the navigation.
      if (data && data.see === "/annotate/guidelines") { window.location.assign(data.see); return new Promise(() => {}); }
      throw err;
    }
    return data;
  }

  async function loadNext() {
    const data = await api("GET", "/api/work/next");
    showItem(data.item, data.progress);
  }

  async function submit(event) {
    if (event) event.preventDefault();
    if (busy || !item) return;
    const fd = new FormData(form);
    const body = {
      assignment_id: item.assignment_id,
      label: fd.get("label") || null,
      confidence: fd.get("confidence") ? parseInt(fd.get("confidence"), 10) : null,
      cant_judge: fd.get("cant_judge") === "true",
      broken: fd.get("broken") === "true",
      flag_reason: (fd.get("flag_reason") || "").trim() || null,
      time_on_task_s: Math.round((performance.now() - shownAt) / 10) / 100,
      client_request_id: document.getElementById("client_request_id").value,
    };
    if (body.cant_judge || body.broken) {
      body.label = null; // a flagged clip takes no label
      if (!body.flag_reason) {
        say("Say why you skip or flag the clip.", true);
        document.getElementById("flag_reason").focus();
        return;
      }
    }
    if (!body.label && !body.cant_judge && !body.broken) { say("Choose a label first (keys 1–9).", true); return; }
    busy = true;
    submitBtn.disabled = true;
    say("Saving…");
    try {
      // The same client_request_id on a retry makes a repeated submit harmless.
      await api("POST", "/api/work/submit", body);
      say("Saved.");
      await loadNext();
    } catch (err) {
      say(err.message, true);
      if (err.status === 409 || err.status === 404) {
        // Lease lost or clip gone: move on to what the server has for us now.
        try { await loadNext(); } catch (e) { say(e.message, true); }
      }
    } finally {
      busy = false;
      submitBtn.disabled = skipBtn.disabled = !item;
    }
  }

  // A skip is a "can't judge" with its reason (the flags as they are): the reason box opens, focused.
  function skip() {
    if (!item) return;
    flags.open = true;
    const cantJudge = document.getElementById("cant_judge");
    if (!document.getElementById("broken").checked) cantJudge.checked = true;
    document.getElementById("flag_reason").focus();
  }

  function toggleShortcuts() {
    if (shortcuts.open) shortcuts.close(); else shortcuts.showModal();
  }

  const guidelines = document.getElementById("guidelines");
  function toggleGuidelines() {
    if (!guidelines) return;
    if (guidelines.open) guidelines.close(); else guidelines.showModal();
  }

  function labelFor(key) {
    return form.querySelector('input[name="label"][data-hotkey="' + CSS.escape(key) + '"]');
  }

  function selectLabel(input) {
    input.checked = true;
    document.querySelectorAll(".label-btn").forEach((b) => b.classList.toggle("selected", b.contains(input) && input.checked));
  }

  form.addEventListener("submit", submit);
  form.addEventListener("change", (e) => {
    if (e.target.name === "label") selectLabel(e.target);
  });
  speed.addEventListener("change", () => {
    player.defaultPlaybackRate = player.playbackRate = parseFloat(speed.value);
    speed.blur(); // give the keyboard back to the hotkeys
  });
  skipBtn.addEventListener("click", skip);
  document.getElementById("shortcuts-open").addEventListener("click", toggleShortcuts);
  const guidelinesOpen = document.getElementById("guidelines-open");
  if (guidelinesOpen) guidelinesOpen.addEventListener("click", toggleGuidelines);
  // On a short screen the open flags push Submit down: bring it back into view.
  flags.addEventListener("toggle", () => { if (flags.open) submitBtn.scrollIntoView({ block: "nearest" }); });
  document.getElementById("replay").addEventListener("click", () => { player.currentTime = 0; player.play().catch(() => {}); });

  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (t && (t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && t.type === "text") || t.tagName === "SELECT")) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === "?") {
      e.preventDefault();
      toggleShortcuts();
      return;
    }
    if ((e.key === "g" || e.key === "G") && guidelines && !labelFor(e.key) && !shortcuts.open) {
      e.preventDefault();
      toggleGuidelines();
      return;
    }
    if (shortcuts.open || (guidelines && guidelines.open)) return; // modal: Esc closes it, nothing else acts behind it
    if (window.emotionsPlayerKey(player, e)) return;
    if ((e.key === "s" || e.key === "S") && !labelFor(e.key)) {
      e.preventDefault();
      skip();
    } else if (e.key === "Enter") {
      e.preventDefault();
      submit();
    } else {
      const input = labelFor(e.key);
      if (input) { e.preventDefault(); selectLabel(input); }
    }
  });

  if (item) {
    player.playbackRate = 1;
    player.play().catch(() => {});
  }
  document.getElementById("client_request_id").value = requestId();
})();
