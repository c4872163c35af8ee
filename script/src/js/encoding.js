// The `k6/encoding` module: base64 of text.
const A = globalThis.__aiotest;

const VARIANTS = ["std", "rawstd", "url", "rawurl"];

function variant(encoding) {
  const v = encoding === undefined ? "std" : String(encoding);
  if (!VARIANTS.includes(v)) {
    throw new TypeError(`base64 encoding \`${v}\`: use ${VARIANTS.join(", ")}`);
  }
  return v;
}

export function b64encode(input, encoding) {
  if (typeof input !== "string") {
    throw new TypeError("b64encode(input): aiotest encodes strings (not ArrayBuffers) yet");
  }
  return A.b64encode(input, variant(encoding));
}

export function b64decode(input, encoding, format) {
  if (format !== "s") {
    throw new TypeError("b64decode(input, encoding, format): aiotest decodes to strings only: pass format \"s\"");
  }
  return A.b64decode(String(input), variant(encoding));
}

export default { b64encode, b64decode };
