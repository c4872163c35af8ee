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
  // Iterations of this scenario started in this process before this one (all VUs).
  get iterationInInstance() {
    return A.scenarioIteration();
  },
});

const test = strict("test", {
  // Ends the run for every VU, on every machine: counted in `script_aborts` under its
  // reason, the run stops as a threshold with abortOnFail stops it, and aiotest exits
  // 108. This VU's iteration ends here.
  abort(reason) {
    A.abortTest(reason === undefined || reason === null ? "" : String(reason));
  },
});

export { vu, scenario, test };
export default strict("execution", { vu, scenario, test });
