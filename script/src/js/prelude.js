// Run once in every VU's context before the script: the globals k6 gives init code.
(function () {
  const A = globalThis.__aiotest;
  const show = (v) => {
    if (typeof v === "string") return v;
    if (v instanceof Error) return String(v);
    try {
      const s = JSON.stringify(v);
      return s === undefined ? String(v) : s;
    } catch (e) {
      return String(v);
    }
  };
  const log = (level) => (...args) => A.log(level, args.map(show).join(" "));
  globalThis.console = {
    log: log("info"),
    info: log("info"),
    debug: log("debug"),
    warn: log("warn"),
    error: log("error"),
  };
  globalThis.open = (path, mode) => A.open(String(path), mode === undefined ? "" : String(mode));
})();
