// The `k6` module: check, group, sleep, fail, on aiotest's VU natives.
const A = globalThis.__aiotest;

export function check(value, sets, tags) {
  if (sets === null || typeof sets !== "object") {
    throw new TypeError("check(value, sets): sets must be an object of named functions");
  }
  if (tags !== undefined) {
    throw new Error("check(value, sets, tags): tags on a check are not supported by aiotest");
  }
  let all = true;
  for (const name of Object.keys(sets)) {
    const f = sets[name];
    const ok = typeof f === "function" ? !!f(value) : !!f;
    A.check(name, ok);
    all = all && ok;
  }
  return all;
}

export function group(name, fn) {
  if (typeof fn !== "function") {
    throw new TypeError("group(name, fn): fn must be a function");
  }
  A.groupEnter(String(name));
  try {
    return fn();
  } finally {
    A.groupExit();
  }
}

export function sleep(seconds) {
  A.sleep(Number(seconds));
}

export function fail(message) {
  throw new Error(message === undefined ? "fail() called" : String(message));
}

export default { check, group, sleep, fail };
