// Behaviour for the admin pages. Loaded as a file: the CSP forbids inline script.
"use strict";

function drawCallsChart() {
  const canvas = document.getElementById("calls-chart");
  if (!canvas || typeof Chart === "undefined") return;
  const data = JSON.parse(canvas.dataset.chart);
  new Chart(canvas, {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: [
        { label: "answered", data: data.answered, backgroundColor: "#1f6feb", stack: "calls" },
        { label: "missed", data: data.missed, backgroundColor: "#f79009", stack: "calls" },
        { label: "AI minutes", data: data.ai_minutes, type: "line", borderColor: "#12b76a", yAxisID: "minutes" },
      ],
    },
    options: {
      animation: false,
      scales: {
        y: { stacked: true, beginAtZero: true, title: { display: true, text: "calls" } },
        minutes: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false }, title: { display: true, text: "minutes" } },
      },
    },
  });
}

async function drawWaveform(canvas) {
  const audio = document.getElementById(canvas.dataset.audio);
  if (!audio) return;
  const width = (canvas.width = canvas.clientWidth * window.devicePixelRatio);
  const height = canvas.height;
  const ctx = canvas.getContext("2d");
  let peaks;
  try {
    const response = await fetch(audio.src, { credentials: "same-origin" });
    const buffer = await new AudioContext().decodeAudioData(await response.arrayBuffer());
    const samples = buffer.getChannelData(0);
    const step = Math.max(1, Math.floor(samples.length / width));
    peaks = new Float32Array(width);
    for (let x = 0; x < width; x++) {
      let max = 0;
      for (let i = x * step; i < (x + 1) * step && i < samples.length; i++) max = Math.max(max, Math.abs(samples[i]));
      peaks[x] = max;
    }
  } catch (err) {
    return; // the player still works; only the picture is missing
  }
  const paint = () => {
    const played = audio.duration ? (audio.currentTime / audio.duration) * width : 0;
    ctx.clearRect(0, 0, width, height);
    for (let x = 0; x < width; x++) {
      const h = Math.max(1, peaks[x] * height);
      ctx.fillStyle = x < played ? "#1f6feb" : "#98a2b3";
      ctx.fillRect(x, (height - h) / 2, 1, h);
    }
  };
  paint();
  audio.addEventListener("timeupdate", paint);
  canvas.addEventListener("click", (ev) => {
    if (!audio.duration) return;
    audio.currentTime = (ev.offsetX / canvas.clientWidth) * audio.duration;
    audio.play();
  });
}

function wireSeekButtons() {
  for (const button of document.querySelectorAll("button.seek")) {
    button.addEventListener("click", () => {
      const audio = document.getElementById(button.dataset.audio);
      if (!audio) return;
      audio.currentTime = parseFloat(button.dataset.t);
      audio.play();
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  drawCallsChart();
  document.querySelectorAll("canvas.waveform").forEach(drawWaveform);
  wireSeekButtons();
});
