// The `k6/data` module: SharedArray, one read-only copy of its data for all VUs.
const A = globalThis.__aiotest;

export class SharedArray {
  constructor(name, fn) {
    if (typeof name !== "string" || name === "") {
      throw new TypeError("SharedArray(name, fn): name must be a non-empty string");
    }
    if (typeof fn !== "function") {
      throw new TypeError("SharedArray(name, fn): fn must be a function that returns an array");
    }
    // The first VU to get here makes the data; the others share what it made.
    if (!A.sharedHas(name)) {
      const items = fn();
      if (!Array.isArray(items)) {
        throw new TypeError(`SharedArray(\`${name}\`): fn must return an array`);
      }
      A.sharedPut(name, items.map((x) => JSON.stringify(x === undefined ? null : x)));
    }
    const id = A.sharedOpen(name);
    const length = A.sharedLength(id);
    const item = (i) => JSON.parse(A.sharedGet(id, i));
    return new Proxy([], {
      get(target, prop) {
        if (prop === "length") return length;
        if (typeof prop === "string" && /^(0|[1-9][0-9]*)$/.test(prop)) {
          const i = Number(prop);
          return i < length ? item(i) : undefined;
        }
        if (prop === Symbol.iterator) {
          return function* () {
            for (let i = 0; i < length; i++) yield item(i);
          };
        }
        return target[prop];
      },
      has(target, prop) {
        if (typeof prop === "string" && /^(0|[1-9][0-9]*)$/.test(prop)) return Number(prop) < length;
        return prop in target;
      },
      set() {
        throw new TypeError(`SharedArray \`${name}\` is read-only`);
      },
      deleteProperty() {
        throw new TypeError(`SharedArray \`${name}\` is read-only`);
      },
    });
  }
}

export default { SharedArray };
