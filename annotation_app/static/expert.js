// The expert's clip page: the labelling page's player keys, a digit picks the final label, D ticks discard.
(function () {
  "use strict";
  const player = document.getElementById("player");
  const speed = document.getElementById("speed");
  if (!player || !speed) return;
  const finalLabel = document.getElementById("final-label");
  const discard = document.getElementById("discard");

  speed.addEventListener("change", () => {
    player.defaultPlaybackRate = player.playbackRate = parseFloat(speed.value);
    speed.blur(); // give the keyboard back to the hotkeys
  });
  document.getElementById("replay").addEventListener("click", () => { player.currentTime = 0; player.play().catch(() => {}); });

  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (t && (t.tagName === "TEXTAREA" || t.tagName === "INPUT" && t.type === "text" || t.tagName === "SELECT")) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (window.emotionsPlayerKey(player, e)) return;
    if (finalLabel && (e.key === "d" || e.key === "D")) {
      e.preventDefault();
      discard.checked = !discard.checked;
      if (discard.checked) document.getElementById("reason").focus();
    } else if (finalLabel) {
      const option = finalLabel.querySelector('option[data-hotkey="' + CSS.escape(e.key) + '"]');
      if (option) { e.preventDefault(); finalLabel.value = option.value; }
    }
  });
})();
