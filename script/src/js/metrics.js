// The `k6/metrics` module: Counter, Gauge, Rate and Trend on aiotest's named metrics.
const A = globalThis.__aiotest;

function metric(kind) {
  return class {
    constructor(name, isTime) {
      if (typeof name !== "string") {
        throw new TypeError("a metric needs a name");
      }
      // Checked and declared now (init code), so a bad name fails before the run.
      this.name = name;
      this.#id = A.metricDefine(name, kind, !!isTime);
    }
    #id;
    add(value, tags) {
      if (typeof value === "boolean") value = value ? 1 : 0;
      A.metricAdd(this.#id, Number(value), tags === undefined || tags === null ? null : JSON.stringify(tags));
    }
  };
}

export const Counter = metric("counter");
export const Gauge = metric("gauge");
export const Rate = metric("rate");
export const Trend = metric("trend");

export default { Counter, Gauge, Rate, Trend };
