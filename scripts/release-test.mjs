// Placeholder until the verdaccio release test lands (issue 2).
console.log('check:release: not built yet');
