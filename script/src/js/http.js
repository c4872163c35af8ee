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

class Response {
  #headers;
  #headerList;
  // `raw` is the VU's response array, by position (see `fill_response`); the next
  // request overwrites it, so everything is copied out of it here.
  constructor(raw) {
    this.status = raw[0];
    this.body = raw[1];
    this.#headerList = raw[2];
    this.timings = {
      blocked: raw[3],
      connecting: raw[4],
      tls_handshaking: raw[5],
      sending: raw[6],
      waiting: raw[7],
      receiving: raw[8],
      duration: raw[9],
    };
    this.proto = raw[10];
    this.error = raw[11];
    this.error_code = raw[12];
    this.url = raw[13];
    this.request = { method: raw[14], url: raw[13] };
  }
  // Made when first read: most scripts never look at the headers.
  get headers() {
    if (this.#headers === undefined) {
      const h = {};
      for (const line of this.#headerList.split("\n")) {
        const at = line.indexOf(": ");
        if (at < 0) continue;
        const k = line.slice(0, at);
        const v = line.slice(at + 2);
        // A header given twice reads as its values joined, as k6 shows it.
        h[k] = h[k] === undefined ? v : h[k] + ", " + v;
      }
      this.#headers = h;
    }
    return this.#headers;
  }
  json(selector) {
    if (this.body === null || this.body === undefined) {
      throw new Error("the response has no body (responseType \"none\", or no answer)");
    }
    const v = JSON.parse(this.body);
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

function send(method, url, body, params) {
  const p = params === undefined || params === null ? null : params;
  if (p !== null && typeof p !== "object") {
    throw new TypeError("request params must be an object");
  }
  return new Response(
    A.request(method, String(url), encodeBody(body), isForm(body), p === null ? null : JSON.stringify(p))
  );
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

export default { request, get, head, post, put, patch, del, options };
