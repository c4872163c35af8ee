// aiotest's charts: SVG line charts of a run's interval series, drawn in the page with no
// library and nothing fetched. Used by the HTML report (series embedded in the file) and
// the live dashboard (series polled from /api/series). Each line is a <polyline> whose
// data-points attribute says how many points it holds.
(function () {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";
  var W = 640, H = 220, L = 56, R = 12, T = 12, B = 28;

  function svg(name, attrs, parent) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  function html(name, cls, parent, text) {
    var e = document.createElement(name);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    if (parent) parent.appendChild(e);
    return e;
  }

  // A round step for about `n` ticks up to `max`.
  function step(max, n) {
    var raw = max / n, p = Math.pow(10, Math.floor(Math.log10(raw))), m = raw / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }

  function label(v) {
    if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (v >= 1e4) return (v / 1e3).toFixed(0) + "k";
    if (v >= 100) return v.toFixed(0);
    if (v >= 1) return +v.toFixed(1) + "";
    return +v.toPrecision(2) + "";
  }

  function clock(s) {
    var m = Math.floor(s / 60), r = Math.round(s % 60);
    return m > 0 ? m + "m" + (r < 10 ? "0" : "") + r + "s" : Math.round(s) + "s";
  }

  // One chart: `lines` are {name, values} over the times `xs` (seconds from the start);
  // a null value leaves a gap. `marks` are [from, to] spans (seconds) shaded behind the
  // lines: intervals where the generator itself was a bottleneck.
  function lineChart(parent, id, title, xs, lines, marks) {
    var fig = html("figure", "chart", parent);
    fig.id = id;
    html("figcaption", null, fig, title);
    var s = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": title }, fig);
    var maxX = Math.max(xs[xs.length - 1] || 1, 1e-9), maxY = 0;
    lines.forEach(function (l) {
      l.values.forEach(function (v) { if (v !== null && v > maxY) maxY = v; });
    });
    var sy = step(maxY > 0 ? maxY : 1, 4), top = sy * Math.ceil((maxY > 0 ? maxY : 1) / sy);
    var x = function (t) { return L + (W - L - R) * t / maxX; };
    var y = function (v) { return H - B - (H - T - B) * v / top; };
    for (var v = 0; v <= top + sy / 2; v += sy) {
      svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), "class": "grid" }, s);
      svg("text", { x: L - 6, y: y(v) + 4, "class": "tick", "text-anchor": "end" }, s)
        .textContent = label(v);
    }
    (marks || []).forEach(function (m) {
      var r = svg("rect", {
        x: x(m[0]).toFixed(1), y: T, width: Math.max(x(m[1]) - x(m[0]), 1).toFixed(1),
        height: H - T - B, "class": "bound"
      }, s);
      svg("title", {}, r).textContent = "the generator was a bottleneck here";
    });
    var sx = step(maxX, 6);
    for (var t = 0; t <= maxX + 1e-9; t += sx) {
      svg("text", { x: x(t), y: H - 8, "class": "tick", "text-anchor": "middle" }, s)
        .textContent = clock(t);
    }
    var legend = html("div", "legend", fig);
    lines.forEach(function (l, i) {
      var pts = [];
      l.values.forEach(function (v, j) {
        if (v !== null && v !== undefined && isFinite(v)) {
          pts.push(x(xs[j]).toFixed(1) + "," + y(v).toFixed(1));
        }
      });
      var pl = svg("polyline", { points: pts.join(" "), "class": "line s" + (i % 8) }, s);
      pl.setAttribute("data-points", pts.length);
      pl.setAttribute("data-name", l.name);
      var key = html("span", "key", legend);
      html("i", "swatch s" + (i % 8), key);
      key.appendChild(document.createTextNode(l.name));
    });
    if (marks && marks.length > 0) {
      var k = html("span", "key", legend);
      html("i", "swatch bound", k);
      k.appendChild(document.createTextNode("generator was a bottleneck"));
    }
    return fig;
  }

  function pick(points, f) { return points.map(f); }

  // Every chart of a run's series into `container` (emptied first).
  function drawCharts(container, points) {
    container.textContent = "";
    if (!points || points.length === 0) {
      html("p", "empty", container, "No interval has closed yet.");
      return;
    }
    var t0 = points[0].start_us;
    var xs = pick(points, function (p) { return (p.end_us - t0) / 1e6; });
    var secs = pick(points, function (p) { return Math.max((p.end_us - p.start_us) / 1e6, 1e-6); });
    var per = function (f) { return points.map(function (p, i) { return f(p) / secs[i]; }); };
    // Intervals where the generator's timer delay or CPU passed its bound.
    var marks = [];
    points.forEach(function (p) {
      if (p.generator_late || p.generator_busy) {
        marks.push([(p.start_us - t0) / 1e6, (p.end_us - t0) / 1e6]);
      }
    });

    lineChart(container, "chart-rps", "Requests per second", xs, [
      { name: "requests/s", values: per(function (p) { return p.total.requests; }) },
      { name: "failures/s", values: per(function (p) { return p.total.failures; }) },
    ], marks);
    var has = function (p) { return p.total.requests > 0; };
    lineChart(container, "chart-latency", "Response time (ms)", xs, [
      { name: "p50", values: points.map(function (p) { return has(p) ? p.total.p50_us / 1e3 : null; }) },
      { name: "p95", values: points.map(function (p) { return has(p) ? p.total.p95_us / 1e3 : null; }) },
      { name: "p99", values: points.map(function (p) { return has(p) ? p.total.p99_us / 1e3 : null; }) },
    ], marks);

    // Scenarios, and which of them are open model (their requests keep a service time).
    var names = [], open = {};
    points.forEach(function (p) {
      (p.scenarios || []).forEach(function (e) {
        if (names.indexOf(e[0]) < 0) names.push(e[0]);
        if (e[1].service_p99_us !== undefined) open[e[0]] = true;
      });
    });
    var of = function (p, name) {
      var e = (p.scenarios || []).filter(function (e) { return e[0] === name; })[0];
      return e ? e[1] : null;
    };
    var openLines = [];
    names.filter(function (n) { return open[n]; }).forEach(function (n) {
      var v = function (f) {
        return points.map(function (p) { var sp = of(p, n); return sp && sp.requests > 0 && f(sp) !== undefined ? f(sp) / 1e3 : null; });
      };
      openLines.push({ name: n + " p99 from intended start", values: v(function (sp) { return sp.p99_us; }) });
      openLines.push({ name: n + " p99 service time", values: v(function (sp) { return sp.service_p99_us; }) });
    });
    if (openLines.length > 0) {
      lineChart(container, "chart-open", "Open model: latency from the intended start and service time (ms)", xs, openLines, marks);
    }
    lineChart(container, "chart-users", "Users", xs, [
      { name: "users", values: pick(points, function (p) { return p.users; }) },
    ]);
    var itLines = [];
    names.forEach(function (n) {
      itLines.push({ name: n, values: per(function (p) { var sp = of(p, n); return sp ? sp.iterations : 0; }) });
      var dropped = points.some(function (p) { var sp = of(p, n); return sp && sp.dropped > 0; });
      if (dropped) {
        itLines.push({ name: n + " dropped", values: per(function (p) { var sp = of(p, n); return sp ? sp.dropped : 0; }) });
      }
    });
    if (itLines.length > 0) {
      lineChart(container, "chart-iterations", "Iterations per second", xs, itLines, marks);
    }
    // The generator's own health, a line per process (per worker in a distributed run).
    var procs = [];
    points.forEach(function (p) {
      (p.generator || []).forEach(function (g) {
        if (procs.indexOf(g.process) < 0) procs.push(g.process);
      });
    });
    if (procs.length > 0) {
      var gen = function (f) {
        return procs.map(function (name) {
          return {
            name: name || "this process",
            values: points.map(function (p) {
              var g = (p.generator || []).filter(function (g) { return g.process === name; })[0];
              var v = g ? f(g) : null;
              return v === undefined ? null : v;
            })
          };
        });
      };
      lineChart(container, "chart-generator-delay", "Generator: timer delay p99 (ms; bound 5)", xs,
        gen(function (g) { return g.delay_p99_ms; }), marks);
      lineChart(container, "chart-generator-cpu", "Generator: CPU (% of the machine; bound 90 for 10 intervals)", xs,
        gen(function (g) { return g.cpu_percent; }), marks);
    }
  }

  window.aiotest = { drawCharts: drawCharts };
})();
