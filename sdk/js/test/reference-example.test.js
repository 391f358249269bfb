'use strict';
// The JavaScript example of API_REFERENCE.md ("SDK Usage"), character for character,
// run against the live server: only the two placeholder values are filled in.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { live } = require('./_support.cjs');

const REFERENCE_EXAMPLE = `const { Agency } = require('j1msky-sdk');

const agency = new Agency({
  apiKey: 'YOUR_KEY',
  baseUrl: 'http://localhost:8080'
});

// Spawn agent
const agent = await agency.spawn({
  model: 'k2p5',
  task: 'Write a blog post about AI',
  priority: 'normal'
});

// Get result
const result = await agent.waitForCompletion();
console.log(result.output);`;

const AsyncFunction = (async () => {}).constructor;

test('the README shows the reference example verbatim', () => {
  const readme = fs.readFileSync(path.join(__dirname, '..', 'README.md'), 'utf8');
  assert.ok(readme.includes(REFERENCE_EXAMPLE), 'sdk/js/README.md lost the reference example');
});

test('the reference JavaScript example runs as written', { skip: live.skip, timeout: 30000 }, async () => {
  const script = REFERENCE_EXAMPLE
    .replace("'YOUR_KEY'", JSON.stringify(live.key))
    .replace("'http://localhost:8080'", JSON.stringify(live.url));
  assert.notEqual(script, REFERENCE_EXAMPLE);
  const printed = [];
  const fakeConsole = { log: (...args) => printed.push(args) };
  // `require` here resolves 'j1msky-sdk' to this package (self-reference via "exports").
  await new AsyncFunction('require', 'console', script)(require, fakeConsole);
  assert.equal(printed.length, 1);
  const [output] = printed[0];
  assert.equal(typeof output, 'string');
  assert.ok(output.length > 0, 'result.output is empty');
});
