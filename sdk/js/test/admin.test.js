'use strict';
// Webhooks and API keys (admin:write) against the live server.
const test = require('node:test');
const assert = require('node:assert/strict');
const { Agency, AuthError, NotFound, ValidationError } = require('j1msky-sdk');
const { live, agency: makeAgency, marker } = require('./_support.cjs');

const opts = { skip: live.skip, timeout: 30000 };

test('webhooks: create, list, get, test, deliveries, delete', opts, async () => {
  const agency = makeAgency();
  // Nothing listens on port 9; the test server allows 127.0.0.1 as a webhook target.
  const url = `http://127.0.0.1:9/${marker('hook')}`;
  const hook = await agency.webhooks.create({ url, events: ['agent.completed', 'agent.failed'] });
  assert.equal(hook.success, true);
  assert.equal(hook.url, url);
  assert.match(hook.secret, /^whsec_/, 'a generated secret is shown once');

  const listed = await agency.webhooks.list();
  const mine = listed.find((item) => item.id === hook.id);
  assert.ok(mine);
  assert.equal(mine.secret, undefined);
  assert.deepEqual((await agency.webhooks.get(hook.id)).events, ['agent.completed', 'agent.failed']);

  const queued = await agency.webhooks.test(hook.id);
  assert.equal(queued.success, true);
  assert.ok(Array.isArray(await agency.webhooks.deliveries(hook.id, { limit: 5 })));

  assert.equal((await agency.webhooks.delete(hook.id)).success, true);
  await assert.rejects(agency.webhooks.get(hook.id), NotFound);
  await assert.rejects(agency.webhooks.create({ url: 'ftp://example.com', events: ['agent.completed'] }),
    ValidationError);
});

test('keys: create, list, rotate, revoke', opts, async () => {
  const agency = makeAgency();
  const created = await agency.keys.create({ name: marker('sdk-key'), scopes: ['agents:read'],
    signing: true, maxConcurrentAgents: 2 });
  assert.match(created.key, /_sk_/);
  assert.match(created.key_id, /^key_/);
  assert.ok(created.api_secret, 'signing: true issues an api_secret');

  const listed = await agency.keys.list();
  const row = listed.find((item) => item.key_id === created.key_id);
  assert.ok(row);
  assert.deepEqual(row.scopes, ['agents:read']);
  assert.equal(row.max_concurrent_agents, 2);
  assert.ok(!JSON.stringify(listed).includes(created.key), 'keys are never listed');

  const reader = new Agency({ apiKey: created.key, baseUrl: live.url, apiSecret: created.api_secret });
  assert.ok((await reader.health()).status);

  const rotated = await agency.keys.rotate(created.key_id);
  assert.notEqual(rotated.key, created.key);
  assert.equal(rotated.replaces, created.key_id);
  assert.ok((await reader.health()).status, 'the old key works during the grace period');

  const revoked = await agency.keys.revoke(created.key_id, { reason: 'sdk test', notifyUser: false });
  assert.equal(revoked.success, true);
  const stale = new Agency({ apiKey: created.key, baseUrl: live.url, apiSecret: created.api_secret, maxRetries: 0 });
  await assert.rejects(stale.health(), (error) => error instanceof AuthError && error.status === 401);
  await agency.keys.revoke(rotated.key_id);
});
