// medfuse clinician page: a heart or lung recording and a clip (player, or the frames the model saw on a
// slider). Loaded after app.js (state, isDicom, showError). No external resources.
"use strict";

function mediaUrl(kind, file) {
  if (state.mediaUrls[kind]) URL.revokeObjectURL(state.mediaUrls[kind]);
  state.mediaUrls[kind] = file ? URL.createObjectURL(file) : null;
  return state.mediaUrls[kind];
}

function chooseAudio(file) {
  state.audio = file || null;
  const player = $("audio-player");
  player.hidden = !file;
  if (file) player.src = mediaUrl("audio", file);
  $("audio-info").textContent = file ? `${file.type || "audio"}, ${Math.ceil(file.size / 1024)} KB` : "";
  showError("");
}

function chooseVideo(file) {
  state.video = file || null;
  const player = $("video-player");
  $("frames-figure").hidden = true;
  if (!file) {
    player.hidden = true;
    $("video-info").textContent = "";
    return;
  }
  const size = `${Math.ceil(file.size / 1024)} KB`;
  if (isDicom(file)) {
    player.hidden = true;
    player.removeAttribute("src");
    $("video-info").textContent = `DICOM cine, ${size}: scrub its frames after classification`;
  } else {
    player.src = mediaUrl("video", file);
    player.hidden = false;
    $("video-info").textContent = `${file.type || "video"}, ${size}`;
  }
  showError("");
}

function setUpMedia() {
  $("audio-file").addEventListener("change", () => chooseAudio($("audio-file").files[0]));
  $("video-file").addEventListener("change", () => chooseVideo($("video-file").files[0]));
  $("video-player").addEventListener("error", () => {
    if (!state.video) return;
    $("video-player").hidden = true;
    $("video-info").textContent = "This browser cannot play the clip: scrub its frames after classification.";
  });
  $("frame-slider").addEventListener("input", () => showFrame(Number($("frame-slider").value)));
}

function showFrame(index) {
  if (!state.frames.length) return;
  $("frame-view").src = `data:image/png;base64,${state.frames[index]}`;
  $("frame-caption").textContent = `Clip frame ${index + 1} of ${state.frames.length} (as the model saw it)`;
}

function renderFrames(result) {
  state.frames = result.video_frames_png || [];
  $("frames-figure").hidden = !state.frames.length;
  const slider = $("frame-slider");
  slider.max = String(Math.max(0, state.frames.length - 1));
  slider.value = "0";
  showFrame(0);
}
