// The Weir console's live updates. Pages work without this file: it only listens to the
// server-sent samples (/console/events) and redraws the charts and numbers that name a
// series (data-series, data-live), by the same arithmetic as the server's chart.rs. It
// writes text with textContent only, never HTML.
"use strict";
(function () {
  var MAX_POINTS = 300; // history.rs HISTORY_SAMPLES

  function points(values, width, height) {
    if (values.length === 0) return "";
    var max = 0;
    values.forEach(function (v) { if (v > max) max = v; });
    var step = values.length > 1 ? width / (values.length - 1) : 0;
    var pad = 2;
    return values.map(function (v, i) {
      var y = max > 0 ? height - pad - (v / max) * (height - 2 * pad) : height / 2;
      return (i * step).toFixed(1) + "," + y.toFixed(1);
    }).join(" ");
  }

  function format(value, unit) {
    if (unit === "B/s") {
      var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0, v = Math.max(0, Math.round(value));
      if (v < 1024) return v + " B/s";
      while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
      return v.toFixed(1) + " " + units[i] + "/s";
    }
    if (unit === "count") return Math.round(value).toLocaleString("en-US");
    if (value >= 100 || value === 0) return value.toFixed(0) + " " + unit;
    return value.toFixed(1) + " " + unit;
  }

  function redraw(svg, value) {
    var data = svg.getAttribute("data-points");
    var values = data ? data.split(",").map(Number) : [];
    values.push(value);
    if (values.length > MAX_POINTS) values = values.slice(values.length - MAX_POINTS);
    svg.setAttribute("data-points", values.join(","));
    var box = svg.viewBox.baseVal;
    var line = svg.querySelector("polyline");
    if (line) line.setAttribute("points", points(values, box.width, box.height));
    var peak = document.querySelector('[data-peak="' + CSS.escape(svg.getAttribute("data-series")) + '"]');
    if (peak) peak.textContent = format(Math.max.apply(null, values.concat([0])), peak.getAttribute("data-unit") || "");
    var label = svg.getAttribute("aria-label") || "";
    svg.setAttribute("aria-label", label.replace(/; latest .*$/, "") + "; latest " + value.toFixed(1));
  }

  function apply(update) {
    document.querySelectorAll("svg[data-series]").forEach(function (svg) {
      var v = update.series[svg.getAttribute("data-series")];
      redraw(svg, typeof v === "number" ? v : 0);
    });
    document.querySelectorAll("[data-live]").forEach(function (el) {
      var v = update.series[el.getAttribute("data-live")];
      if (typeof v === "number") el.textContent = format(v, el.getAttribute("data-unit") || "");
    });
  }

  function start() {
    if (!window.EventSource) return;
    if (!document.querySelector("svg[data-series], [data-live]")) return;
    var status = document.getElementById("live-status");
    var source = new EventSource("/console/events");
    source.addEventListener("sample", function (e) {
      try { apply(JSON.parse(e.data)); } catch (err) { /* a malformed sample: skip it */ }
      if (status) status.textContent = "Live: updated " + new Date().toLocaleTimeString();
    });
    source.onerror = function () {
      if (status) status.textContent = "Live updates paused (reconnecting).";
    };
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
