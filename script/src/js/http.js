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
  constructor(raw) {
    Object.assign(this, raw);
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

export function request(method, url, body, params) {
  const p = params === undefined || params === null ? null : params;
  if (p !== null && typeof p !== "object") {
    throw new TypeError("request params must be an object");
  }
  return new Response(
    A.request(String(method).toUpperCase(), String(url), encodeBody(body), isForm(body), p === null ? null : JSON.stringify(p))
  );
}

export function get(url, params) {
  return request("GET", url, null, params);
}
export function head(url, params) {
  return request("HEAD", url, null, params);
}
export function post(url, body, params) {
  return request("POST", url, body, params);
}
export function put(url, body, params) {
  return request("PUT", url, body, params);
}
export function patch(url, body, params) {
  return request("PATCH", url, body, params);
}
export function del(url, body, params) {
  return request("DELETE", url, body, params);
}
export function options(url, body, params) {
  return request("OPTIONS", url, body, params);
}

export default { request, get, head, post, put, patch, del, options };
