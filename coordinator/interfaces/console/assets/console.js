// The run page, live: follow the run's event stream (Server-Sent Events; the browser resumes it
// with Last-Event-ID after a reconnect) and refresh the steps when something happens.
(function () {
  const live = document.getElementById("live");
  if (!live || live.dataset.ended === "yes") return;
  const run = live.dataset.run;
  const list = document.getElementById("events");
  // Start after the last event the page was rendered with; the browser sends Last-Event-ID itself
  // when it reconnects.
  const after = encodeURIComponent(list.dataset.last || "");
  const source = new EventSource(`/ui/runs/${encodeURIComponent(run)}/events?after=${after}`);
  let pending = null;
  function refresh() {
    pending = pending || setTimeout(async () => {
      pending = null;
      const reply = await fetch(`/ui/runs/${encodeURIComponent(run)}/steps`, { headers: { accept: "text/html" } });
      if (reply.ok) document.getElementById("steps").outerHTML = await reply.text();
    }, 50);
  }
  source.addEventListener("error", () => { live.textContent = "reconnecting"; });
  source.addEventListener("open", () => { live.textContent = "live"; });
  const onEvent = (message) => {
    const data = JSON.parse(message.data);
    const { type, at, ...fields } = data;
    const item = document.createElement("li");
    const code = document.createElement("code");
    code.textContent = type;  // text, never markup
    item.append(code, " " + JSON.stringify(fields));
    list.append(item);
    refresh();
    if (type === "run_finished") {
      source.close();
      live.textContent = "ended";
      live.dataset.ended = "yes";
      document.querySelectorAll("form.actions").forEach((form) => form.remove());
    }
  };
  source.onmessage = onEvent;
})();
