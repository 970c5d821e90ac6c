// Placeholder until the conformance harness lands (issue 11).
console.log('bench: harness not built yet; no scenarios ran');
