// The `k6/http` module: requests on aiotest's HTTP client, answered synchronously.
const A = globalThis.__aiotest;

// `a.b[0].c` (k6's selectors for the common case: keys and indexes).
function select(value, selector) {
  const parts = String(selector).match(/[^.[\]]+/g) || [];
  let v = value;
  for (const p of parts) {
    if (v === null || v === undefined) return undefined;
    v = v[p];
  }
  return v;
}

// `content-type` as k6 shows a header's name: `Content-Type`.
function canonical(name) {
  return name.toLowerCase().replace(/(^|-)([a-z])/g, (m, dash, c) => dash + c.toUpperCase());
}

// The head's `Name: value` lines, as [name, value] pairs.
function headerPairs(block) {
  const out = [];
  for (const line of block.split("\n")) {
    const at = line.indexOf(":");
    if (at <= 0) continue;
    out.push([line.slice(0, at).trim(), line.slice(at + 1).trim()]);
  }
  return out;
}

// `Set-Cookie` headers as k6's `res.cookies` shows them: by name, each a list of
// `{ name, value, domain, path, http_only, secure, max_age, expires }`.
function parseCookies(block) {
  const out = {};
  for (const [name, value] of headerPairs(block)) {
    if (name.toLowerCase() !== "set-cookie") continue;
    const parts = value.split(";");
    const nv = parts.shift();
    const at = nv.indexOf("=");
    if (at <= 0) continue;
    const c = {
      name: nv.slice(0, at).trim(),
      value: nv.slice(at + 1).trim(),
      domain: "",
      path: "",
      http_only: false,
      secure: false,
      max_age: 0,
      expires: 0,
    };
    for (const part of parts) {
      const eq = part.indexOf("=");
      const k = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
      const v = eq < 0 ? "" : part.slice(eq + 1).trim();
      if (k === "domain") c.domain = v;
      else if (k === "path") c.path = v;
      else if (k === "httponly") c.http_only = true;
      else if (k === "secure") c.secure = true;
      else if (k === "max-age") c.max_age = Number(v) || 0;
      else if (k === "expires") c.expires = Date.parse(v) || 0;
    }
    (out[c.name] = out[c.name] || []).push(c);
  }
  return out;
}

// A response. `raw` is the VU's response array, by position (see `fill_response`),
// which the next request overwrites: it is copied here, and every field is read from
// the copy when first asked for (most scripts read the status and little else).
// What a response makes when first read is kept in its copy, past the response's
// fields: one private field to define per response.
const HEADERS = 15;
const COOKIES = 16;
const TIMINGS = 17;
const REQUEST = 18;

class Response {
  #raw;
  constructor(raw) {
    // An array literal: cheaper to make than a slice.
    const r = raw;
    this.#raw = [r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14]];
  }
  get status() {
    return this.#raw[0];
  }
  get body() {
    return this.#raw[1];
  }
  get timings() {
    const r = this.#raw;
    if (r[TIMINGS] === undefined) {
      r[TIMINGS] = {
        blocked: r[3],
        connecting: r[4],
        tls_handshaking: r[5],
        sending: r[6],
        waiting: r[7],
        receiving: r[8],
        duration: r[9],
      };
    }
    return r[TIMINGS];
  }
  get proto() {
    return this.#raw[10];
  }
  get error() {
    return this.#raw[11];
  }
  get error_code() {
    return this.#raw[12];
  }
  get url() {
    return this.#raw[13];
  }
  get request() {
    const r = this.#raw;
    if (r[REQUEST] === undefined) r[REQUEST] = { method: r[14], url: r[13] };
    return r[REQUEST];
  }
  get headers() {
    const r = this.#raw;
    if (r[HEADERS] === undefined) {
      const h = {};
      for (const [name, value] of headerPairs(r[2])) {
        const k = canonical(name);
        // A header given twice reads as its values joined, as k6 shows it.
        h[k] = h[k] === undefined ? value : h[k] + ", " + value;
      }
      r[HEADERS] = h;
    }
    return r[HEADERS];
  }
  get cookies() {
    const r = this.#raw;
    if (r[COOKIES] === undefined) r[COOKIES] = parseCookies(r[2]);
    return r[COOKIES];
  }
  json(selector) {
    const body = this.#raw[1];
    if (body === null || body === undefined) {
      throw new Error("the response has no body (responseType \"none\", or no answer)");
    }
    const v = JSON.parse(body);
    return selector === undefined ? v : select(v, selector);
  }
}

function encodeBody(body) {
  if (body === undefined || body === null) return null;
  if (typeof body === "string") return body;
  if (typeof body === "object") {
    // k6 sends an object as a form.
    return Object.keys(body)
      .map((k) => encodeURIComponent(k) + "=" + encodeURIComponent(String(body[k])))
      .join("&");
  }
  return String(body);
}

function isForm(body) {
  return body !== undefined && body !== null && typeof body === "object";
}

// The VU's one cookie jar (`http.cookieJar()`); k6's jars of one's own are not
// supported.
let making = false;
export class CookieJar {
  constructor() {
    if (!making) {
      throw new Error(
        "new http.CookieJar() is not supported by aiotest: a VU has one jar, http.cookieJar()"
      );
    }
  }
  cookiesForURL(url) {
    return JSON.parse(A.jar("cookiesForURL", String(url), null, null, null));
  }
  set(url, name, value, options) {
    const o = options === undefined || options === null ? null : JSON.stringify(options);
    A.jar("set", String(url), String(name), String(value), o);
  }
  clear(url) {
    A.jar("clear", String(url), null, null, null);
  }
  delete(url, name) {
    A.jar("delete", String(url), String(name), null, null);
  }
}
making = true;
const theJar = new CookieJar();
making = false;

export function cookieJar() {
  return theJar;
}

// `params` as JSON for the natives; `jar` may only be the VU's own.
function paramsJson(params) {
  if (params === undefined || params === null) return null;
  if (typeof params !== "object") throw new TypeError("request params must be an object");
  if (!("jar" in params)) return JSON.stringify(params);
  if (params.jar !== theJar) {
    throw new Error(
      "params.jar: aiotest has one jar per VU, http.cookieJar()'s; another jar is not supported"
    );
  }
  const rest = Object.assign({}, params);
  delete rest.jar;
  return JSON.stringify(rest);
}

function send(method, url, body, params) {
  return new Response(
    A.request(method, String(url), encodeBody(body), isForm(body), paramsJson(params))
  );
}

// One request of a batch: a URL (a GET), `[method, url, body, params]` or
// `{ method, url, body, params }`.
function batchItem(key, r) {
  let method = "GET";
  let url;
  let body = null;
  let params;
  if (typeof r === "string") {
    url = r;
  } else if (Array.isArray(r)) {
    [method, url, body, params] = r;
  } else if (r !== null && typeof r === "object") {
    ({ method = "GET", url, body = null, params } = r);
  } else {
    throw new TypeError(`http.batch: request ${key} must be a URL, an array or an object`);
  }
  return {
    key: String(key),
    method: String(method).toUpperCase(),
    url: String(url),
    body: encodeBody(body),
    form: isForm(body),
    params: paramsJson(params),
  };
}

// The requests side by side; the responses in the same shape (an array or an object).
export function batch(requests) {
  if (requests === null || typeof requests !== "object") {
    throw new TypeError("http.batch takes an array or an object of requests");
  }
  const list = Array.isArray(requests);
  const keys = list ? requests.map((_, i) => i) : Object.keys(requests);
  const raws = A.batch(JSON.stringify(keys.map((k) => batchItem(k, requests[k]))));
  const out = list ? [] : {};
  keys.forEach((k, i) => {
    out[k] = new Response(raws[i]);
  });
  return out;
}

export function request(method, url, body, params) {
  return send(String(method).toUpperCase(), url, body, params);
}

export function get(url, params) {
  return send("GET", url, null, params);
}
export function head(url, params) {
  return send("HEAD", url, null, params);
}
export function post(url, body, params) {
  return send("POST", url, body, params);
}
export function put(url, body, params) {
  return send("PUT", url, body, params);
}
export function patch(url, body, params) {
  return send("PATCH", url, body, params);
}
export function del(url, body, params) {
  return send("DELETE", url, body, params);
}
export function options(url, body, params) {
  return send("OPTIONS", url, body, params);
}

export default { request, get, head, post, put, patch, del, options, batch, cookieJar, CookieJar };
