// The `k6/execution` module: who this VU is and where it is. A field aiotest does not
// have throws, naming it, instead of reading as undefined.
const A = globalThis.__aiotest;

function strict(what, fields) {
  return new Proxy(fields, {
    get(target, prop) {
      if (typeof prop !== "string" || prop in target) return Reflect.get(target, prop);
      throw new Error(`k6/execution: ${what}.${prop} is not supported by aiotest`);
    },
  });
}

const vu = strict("vu", {
  get idInInstance() {
    return __VU;
  },
  get idInTest() {
    return __VU;
  },
  get iterationInInstance() {
    return __ITER;
  },
  get iterationInScenario() {
    return __ITER;
  },
});

const scenario = strict("scenario", {
  get name() {
    return A.scenarioName();
  },
});

const test = strict("test", {
  abort(message) {
    throw new Error(
      "k6/execution: test.abort() is not supported by aiotest yet" +
        (message === undefined ? "" : ` (${message})`) +
        "; a threshold with abortOnFail ends a run early"
    );
  },
});

export { vu, scenario, test };
export default strict("execution", { vu, scenario, test });
