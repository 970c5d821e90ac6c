// Placeholder until the conformance harness lands (issue 4).
console.log('conformance: harness not built yet; no suites ran');
