// The player keys the labelling page and the expert's clip page share: Space plays or pauses,
// the arrows step a second, R replays. One handler, so the two pages cannot drift apart.
window.emotionsPlayerKey = function (player, e) {
  if (e.key === " ") {
    e.preventDefault();
    if (player.paused) player.play().catch(() => {}); else player.pause();
  } else if (e.key === "ArrowLeft") {
    e.preventDefault();
    player.currentTime = Math.max(0, player.currentTime - 1);
  } else if (e.key === "ArrowRight") {
    e.preventDefault();
    player.currentTime = Math.min(player.duration || 0, player.currentTime + 1);
  } else if (e.key === "r" || e.key === "R") {
    player.currentTime = 0;
    player.play().catch(() => {});
  } else {
    return false;
  }
  return true;
};
