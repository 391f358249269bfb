'use strict';
// Request signing with apiSecret against a key that requires signatures.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const { Agency, AuthError, signRequest } = require('j1msky-sdk');
const { live, marker } = require('./_support.cjs');

const opts = { skip: live.skipSigning, timeout: 30000 };

function signed(options = {}) {
  return new Agency({ apiKey: live.signingKey, apiSecret: live.signingSecret, baseUrl: live.url,
    backoffBaseMs: 50, ...options });
}

test('signRequest is the documented HMAC', () => {
  const timestamp = '2026-02-19T10:00:00.000Z';
  const body = '{"model":"k2p5","task":"test"}';
  const headers = signRequest('s3cret', 'post', '/api/spawn?x=1', body, timestamp);
  const expected = crypto.createHmac('sha256', 's3cret')
    .update(`${timestamp}\nPOST\n/api/spawn?x=1\n${body}`).digest('hex');
  assert.deepEqual(headers, { 'X-Timestamp': timestamp, 'X-Signature': expected });
});

test('signed GET with a query string', opts, async () => {
  const agency = signed();
  // filter and sort make a query that needs encoding: the signature covers it as sent.
  const page = await agency.agentsPage({ limit: 3, sort: '-created_at',
    filter: { status: { in: ['completed', 'failed'] }, task: { contains: 'a b&c=d' } } });
  assert.ok(Array.isArray(page.data));
  const agents = [];
  for await (const agent of agency.listAgents({ limit: 1, model: 'k2p5' })) {
    agents.push(agent);
    if (agents.length === 2) break;
  }
  assert.ok((await agency.health()).status);
});

test('signed POST, signed DELETE, and signed idempotent replays', opts, async () => {
  const agency = signed();
  const agent = await agency.spawn({ model: 'k2p5', task: marker('signed ünïcode ✓') });
  const result = await agent.waitForCompletion({ pollIntervalMs: 100 });
  assert.equal(result.status, 'completed');
  const slow = await agency.spawn({ model: 'opus', task: marker('signed cancel') });
  assert.equal((await slow.cancel()).status, 'cancelled');
  // The same Idempotency-Key twice: each request carries its own fresh signature
  // (the server refuses a signature it has seen), and the second is a replay.
  const idempotencyKey = crypto.randomUUID();
  const body = { model: 'k2p5', task: marker('signed replay') };
  const first = await agency.request('POST', '/spawn', { body, idempotencyKey });
  const again = await agency.request('POST', '/spawn', { body, idempotencyKey });
  assert.equal(again.replayed, true);
  assert.equal(again.data.agent_id, first.data.agent_id);
});

test('the signing key refuses unsigned and wrongly signed requests', opts, async () => {
  const unsigned = new Agency({ apiKey: live.signingKey, baseUrl: live.url, maxRetries: 0 });
  await assert.rejects(unsigned.health(), (error) => {
    assert.ok(error instanceof AuthError);
    assert.equal(error.status, 401);
    assert.match(error.message, /Signed request required/);
    return true;
  });
  const wrong = signed({ apiSecret: 'not-the-secret', maxRetries: 0 });
  await assert.rejects(wrong.spawn({ model: 'k2p5', task: 'x' }), (error) => {
    assert.ok(error instanceof AuthError);
    assert.match(error.message, /Invalid request signature/);
    return true;
  });
});
