/* Report page: follows the making of a report (phase and percentage) without reloading by hand.
   Asks the progress URL every second; once the report is ready or failed, reloads the page,
   which then offers the download or says what went wrong. Without JavaScript, the page's
   <noscript> refresh does the same every few seconds. */
(function () {
  "use strict";
  var box = document.querySelector("[data-progress-url]");
  if (!box) { return; }
  var url = box.getAttribute("data-progress-url");
  var bar = box.querySelector("progress");
  var phase = box.querySelector(".phase");
  var percent = box.querySelector(".percent");
  var status = box.querySelector(".status");
  function show(data) {
    bar.value = data.percent;
    bar.textContent = data.percent + " %";
    percent.textContent = data.percent + " %";
    phase.textContent = data.phase;
    status.textContent = data.status_label;
  }
  function tick() {
    fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        show(data);
        if (data.finished) { window.location.reload(); return; }
        window.setTimeout(tick, 1000);
      })
      .catch(function () { window.setTimeout(tick, 3000); });
  }
  window.setTimeout(tick, 1000);
}());
