// The live dashboard: polls the control server (state, series, tables) every second and
// sends its commands. With a control token, the token comes from the page's #token=...
// fragment (never sent to the server in a URL) or the token box, and goes with every
// request as a bearer token.
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var token = "";
  var m = /(?:^|[#&])token=([^&]*)/.exec(location.hash);
  if (m) token = decodeURIComponent(m[1]);
  try { token = token || sessionStorage.getItem("aiotest-token") || ""; } catch (e) { /* private mode */ }

  function headers() {
    return token ? { Authorization: "Bearer " + token } : {};
  }

  function say(text) { $("message").textContent = text || ""; }

  function call(method, path, body) {
    var init = { method: method, headers: headers() };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    return fetch(path, init).then(function (r) {
      if (r.status === 401) {
        $("token-box").hidden = false;
        throw new Error("this control server needs its token");
      }
      if (!r.ok) {
        return r.json().then(function (j) { throw new Error(j.error || r.statusText); },
          function () { throw new Error(r.statusText); });
      }
      return r.headers.get("content-type") === "application/json" ? r.json() : r.text();
    });
  }

  function command(path, body) {
    return function () {
      call("POST", path, body ? body() : undefined).then(function () { say(""); poll(); },
        function (e) { say(e.message); });
    };
  }

  $("pause").addEventListener("click", command("/api/pause"));
  $("resume").addEventListener("click", command("/api/resume"));
  $("stop").addEventListener("click", command("/api/stop"));
  $("set-users").addEventListener("click", command("/api/users", function () {
    return { users: Number($("users").value) };
  }));
  $("use-token").addEventListener("click", function () {
    token = $("token").value;
    try { sessionStorage.setItem("aiotest-token", token); } catch (e) { /* private mode */ }
    $("token-box").hidden = true;
    poll();
  });
  // The report is fetched with the token and saved from memory: a plain link cannot
  // carry an Authorization header.
  $("report").addEventListener("click", function (ev) {
    ev.preventDefault();
    call("GET", "/report.html").then(function (text) {
      var a = document.createElement("a");
      a.href = URL.createObjectURL(new Blob([text], { type: "text/html" }));
      a.download = "aiotest-report.html";
      document.body.appendChild(a);
      a.click();
      a.remove();
    }, function (e) { say(e.message); });
  });

  function fixed(v, d) { return typeof v === "number" ? v.toFixed(d) : "-"; }

  var busy = false;
  function poll() {
    if (busy) return;
    busy = true;
    Promise.all([call("GET", "/api/state"), call("GET", "/api/series"), call("GET", "/api/tables")])
      .then(function (r) {
        var st = r[0], series = r[1], tables = r[2];
        var state = $("state");
        // A finished run (kept up by --linger) shows its final state: nothing to steer.
        state.textContent = st.done ? "DONE" : st.state;
        state.className = "badge" + (st.done ? "" : st.state === "RUNNING" ? " ok" : st.state === "PAUSED" ? " warn" : "");
        ["pause", "resume", "stop", "set-users"].forEach(function (id) { $(id).disabled = !!st.done; });
        var users = 0;
        for (var k in st.users) users += st.users[k];
        $("tile-users").textContent = users;
        $("tile-rps").textContent = fixed(st.rps, 1);
        $("tile-p95").textContent = fixed(st.p95_ms, 2);
        $("tile-requests").textContent = st.requests;
        $("tile-failures").textContent = st.failures;
        $("command").textContent = tables.command || "";
        $("report").hidden = !tables.finished;
        aiotest.drawCharts($("charts"), series.points);
        $("tables").innerHTML = tables.html;
        say("");
      }, function (e) { say(e.message); })
      .then(function () { busy = false; });
  }
  poll();
  setInterval(poll, 1000);
})();
