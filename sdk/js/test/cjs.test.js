'use strict';
// The package loads with require(), by name and by file, and works against the server.
const test = require('node:test');
const assert = require('node:assert/strict');
const { live, marker } = require('./_support.cjs');

const sdk = require('j1msky-sdk');

test('require("j1msky-sdk") is the CommonJS entry point', () => {
  assert.equal(sdk, require('../index.cjs'));
  const pkg = require('../package.json');
  assert.equal(pkg.name, 'j1msky-sdk');
  assert.equal(pkg.version, '4.0.0');
  assert.equal(sdk.VERSION, pkg.version);
  assert.deepEqual(pkg.dependencies ?? {}, {});
  for (const name of ['Agency', 'Agent', 'Result', 'J1mskyError', 'RateLimitError', 'AuthError',
    'ValidationError', 'NotFound', 'Conflict', 'ServerError']) {
    assert.equal(typeof sdk[name], 'function', name);
  }
  for (const name of ['RateLimitError', 'AuthError', 'ValidationError', 'NotFound', 'Conflict',
    'ServerError', 'NetworkError', 'WaitTimeoutError']) {
    assert.ok(sdk[name].prototype instanceof sdk.J1mskyError, `${name} extends J1mskyError`);
  }
});

test('the constructor needs a key and finds the API root', () => {
  assert.throws(() => new sdk.Agency({ apiKey: '' }), TypeError);
  const roots = {
    'http://pi.local:8080': 'http://pi.local:8080/api',
    'http://pi.local:8080/': 'http://pi.local:8080/api',
    'http://pi.local:8080/api': 'http://pi.local:8080/api',
    'http://pi.local:8080/api/v4/': 'http://pi.local:8080/api/v4',
    'https://example.com/j1msky': 'https://example.com/j1msky/api',
  };
  for (const [baseUrl, root] of Object.entries(roots)) {
    assert.equal(new sdk.Agency({ apiKey: 'k', baseUrl }).apiRoot, root, baseUrl);
  }
  const agency = new sdk.Agency({ apiKey: 'live_sk_secret' });
  assert.ok(!JSON.stringify(agency).includes('live_sk_secret'), 'the key is not enumerable');
});

test('CommonJS client: spawn and wait', { skip: live.skip, timeout: 30000 }, async () => {
  const agency = new sdk.Agency({ apiKey: live.key, baseUrl: live.url });
  const agent = await agency.spawn({ model: 'k2p5', task: marker('cjs'), priority: 'high' });
  assert.ok(agent instanceof sdk.Agent);
  assert.match(agent.id, /^subagent_\d+_\d+$/);
  assert.equal(agent.data.priority, 'high');
  const result = await agent.waitForCompletion({ pollIntervalMs: 200 });
  assert.ok(result instanceof sdk.Result);
  assert.equal(result.status, 'completed');
  assert.equal(result.ok, true);
  assert.equal(result.agent, agent);
  assert.equal(typeof result.output, 'string');
  assert.equal(typeof result.cost, 'number');
  assert.ok(result.usage.output_tokens > 0);
  assert.equal(result.error, null);
});
