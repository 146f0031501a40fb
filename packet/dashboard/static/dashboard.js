// Packet dashboard: copy buttons, the usage chart, the Playground's streamed answer.
"use strict";

function setupCopyButtons() {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const source = document.querySelector(button.dataset.copy);
      const label = button.textContent;
      try {
        await navigator.clipboard.writeText(source.textContent.trim());
        button.textContent = "Copied";
      } catch (err) {
        const range = document.createRange();
        range.selectNodeContents(source);
        window.getSelection().removeAllRanges();
        window.getSelection().addRange(range);
        button.textContent = "Selected: press Ctrl+C";
      }
      setTimeout(() => { button.textContent = label; }, 2000);
    });
  }
}

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

function setupUsageChart() {
  const canvas = document.getElementById("usage-chart");
  const data = document.getElementById("usage-data");
  if (!canvas || !data || typeof Chart === "undefined") return;
  const usage = JSON.parse(data.textContent);
  const datasets = (metric) => Object.entries(usage.series).map(([model, values], i) => ({
    label: model, data: values[metric], backgroundColor: PALETTE[i % PALETTE.length], stack: "all",
  }));
  const chart = new Chart(canvas, {
    type: "bar",
    data: { labels: usage.days, datasets: datasets("requests") },
    options: {
      responsive: true, maintainAspectRatio: false, animation: false,
      scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } },
    },
  });
  for (const input of document.querySelectorAll("input[name=metric]")) {
    input.addEventListener("change", () => {
      chart.data.datasets = datasets(input.value);
      chart.update();
    });
  }
}

// One short-lived key per page: asked for at the first message, kept in memory only.
let playgroundKey = null;

async function keyFor(form) {
  if (playgroundKey) return playgroundKey;
  const answer = await fetch(form.dataset.keyUrl, {
    method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": form.dataset.csrf },
  });
  if (!answer.ok) throw new Error(`could not get a Playground key (${answer.status})`);
  playgroundKey = (await answer.json()).key;
  return playgroundKey;
}

async function send(form, output, status) {
  output.textContent = "";
  status.textContent = "Waiting for the first token…";
  const response = await fetch(form.dataset.api, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${await keyFor(form)}` },
    body: JSON.stringify({
      model: form.elements.model.value,
      messages: [{ role: "user", content: form.elements.message.value }],
      stream: true,
      stream_options: { include_usage: true },
    }),
  });
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(body.error ? body.error.message : `HTTP ${response.status}`);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let usage = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of frame.split("\n")) {
        if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
        const event = JSON.parse(line.slice(6));
        if (event.error) throw new Error(event.error.message);
        if (event.usage) usage = event.usage;
        for (const choice of event.choices || []) {
          if (choice.delta && choice.delta.content) {
            output.textContent += choice.delta.content;
            status.textContent = "Streaming…";
          }
        }
      }
    }
  }
  status.textContent = usage
    ? `Done: ${usage.prompt_tokens} prompt + ${usage.completion_tokens} completion tokens.`
    : "Done.";
  output.dataset.done = "true";
}

function setupPlayground() {
  const form = document.getElementById("playground");
  if (!form) return;
  const output = document.getElementById("answer");
  const status = document.querySelector("#answer-status small");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    delete output.dataset.done;
    try {
      await send(form, output, status);
    } catch (err) {
      status.textContent = `Error: ${err.message}`;
    } finally {
      button.disabled = false;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupCopyButtons();
  setupUsageChart();
  setupPlayground();
});
