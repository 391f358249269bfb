'use strict';
// Agents against the live server: teams, batches, listing by cursor, cancel, errors,
// idempotency, and the read-only service endpoints.
const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const {
  Agent, Result, J1mskyError, NotFound, Conflict, ValidationError, AuthError, Agency,
} = require('j1msky-sdk');
const { live, agency: makeAgency, marker } = require('./_support.cjs');

const opts = { skip: live.skip, timeout: 30000 };

test('spawnTeam runs the steps in order, each fed the previous output', opts, async () => {
  const agency = makeAgency();
  const agent = await agency.spawnTeam({ team: 'team_coding', task: marker('team') });
  assert.ok(agent instanceof Agent);
  assert.equal(agent.data.team, 'team_coding');
  assert.equal(agent.data.models.length, 2);
  const result = await agent.waitForCompletion({ pollIntervalMs: 200 });
  assert.equal(result.status, 'completed');
  assert.equal(result.steps.length, 2);
  assert.ok(result.steps.every((step) => step.status === 'completed'));
  assert.equal(result.output, result.steps[1].output);
});

test('spawnBatch and listAgents over several pages', opts, async () => {
  const agency = makeAgency();
  const tag = marker('list');
  const spawned = await agency.spawnBatch(
    [1, 2, 3, 4, 5].map((n) => ({ model: 'k2p5', task: `${tag} #${n}`, priority: 'low' })));
  assert.equal(spawned.length, 5);
  assert.ok(spawned.every((agent) => agent instanceof Agent));
  const filter = { task: { contains: tag } };

  const firstPage = await agency.agentsPage({ filter, limit: 2, sort: 'created_at' });
  assert.equal(firstPage.data.length, 2);
  assert.equal(firstPage.pagination.total, 5);
  assert.equal(firstPage.pagination.has_more, true);
  assert.ok(firstPage.nextCursor);
  assert.ok(firstPage.agents[0] instanceof Agent);

  const requested = [];
  const original = agency.request.bind(agency);
  agency.request = (method, path, options) => {
    requested.push(options && options.query);
    return original(method, path, options);
  };
  const seen = [];
  for await (const agent of agency.listAgents({ filter, limit: 2, sort: 'created_at' })) {
    assert.ok(agent instanceof Agent);
    seen.push(agent.id);
  }
  assert.equal(requested.length, 3, 'three pages of two');
  assert.equal(requested[0].cursor, undefined);
  assert.ok(requested[1].cursor && requested[2].cursor && requested[1].cursor !== requested[2].cursor);
  assert.deepEqual(seen, spawned.map((agent) => agent.id));

  // Descending and with the documented shorthand filters as well.
  const newestFirst = [];
  for await (const agent of agency.listAgents({ filter, model: 'k2p5', sort: '-created_at', limit: 3 })) {
    newestFirst.push(agent.id);
  }
  assert.deepEqual(newestFirst, [...seen].reverse());

  for (const agent of spawned) await agent.waitForCompletion({ pollIntervalMs: 100 });
});

test('cancel, then Conflict on a second cancel', opts, async () => {
  const agency = makeAgency();
  // opus is slow on the test server, so it is still waiting or running here.
  const agent = await agency.spawn({ model: 'opus', task: marker('cancel') });
  const cancelled = await agent.cancel();
  assert.equal(cancelled.success, true);
  assert.equal(cancelled.status, 'cancelled');
  assert.equal(typeof cancelled.refund, 'number');
  assert.equal(agent.status, 'cancelled');
  await assert.rejects(agency.cancel(agent.id), (error) => {
    assert.ok(error instanceof Conflict);
    assert.equal(error.status, 409);
    assert.match(error.message, /already cancelled/);
    assert.match(error.requestId, /^req_/);
    return true;
  });
  const result = await agent.waitForCompletion();
  assert.equal(result.status, 'cancelled');
  assert.equal(result.ok, false);
  assert.equal(result.output, null);
});

test('NotFound carries the request id', opts, async () => {
  const agency = makeAgency();
  await assert.rejects(agency.getAgent('subagent_1_404'), (error) => {
    assert.ok(error instanceof NotFound);
    assert.ok(error instanceof J1mskyError);
    assert.equal(error.name, 'NotFound');
    assert.equal(error.status, 404);
    assert.match(error.requestId, /^req_[0-9a-f]+$/);
    assert.equal(error.requestId, error.headers.get('x-request-id'));
    return true;
  });
  await assert.rejects(agency.webhooks.get('wh_missing'), NotFound);
});

test('ValidationError carries the field details', opts, async () => {
  const agency = makeAgency();
  await assert.rejects(agency.spawn({ model: 'k2p5', task: '   ' }), (error) => {
    assert.ok(error instanceof ValidationError);
    assert.equal(error.status, 400);
    assert.equal(error.message, 'Task cannot be empty');
    assert.deepEqual(error.details, { task: ['Task cannot be empty'] });
    assert.match(error.requestId, /^req_/);
    return true;
  });
  await assert.rejects(agency.spawn({ model: 'gpt-9', task: 'x', priority: 'urgent' }), (error) => {
    assert.ok(error instanceof ValidationError);
    assert.ok(error.details.model && error.details.priority, JSON.stringify(error.details));
    return true;
  });
  await assert.rejects(agency.agentsPage({ limit: 1000 }), (error) => {
    assert.ok(error instanceof ValidationError);
    assert.ok(error.details.limit);
    return true;
  });
});

test('AuthError for a bad key and for a missing scope', opts, async () => {
  const stranger = new Agency({ apiKey: 'live_sk_' + 'x'.repeat(32), baseUrl: live.url, maxRetries: 0 });
  await assert.rejects(stranger.health(), (error) => error instanceof AuthError && error.status === 401);
  if (!live.limitedKey) return;
  const writeOnly = new Agency({ apiKey: live.limitedKey, baseUrl: live.url, maxRetries: 0 });
  await assert.rejects(writeOnly.listAgents().next(), (error) => {
    assert.ok(error instanceof AuthError);
    assert.equal(error.status, 403);
    assert.match(error.message, /agents:read/);
    return true;
  });
});

test('idempotent replay: the same key twice answers once', opts, async () => {
  const agency = makeAgency();
  const idempotencyKey = crypto.randomUUID();
  const body = { model: 'k2p5', task: marker('idem') };
  const first = await agency.request('POST', '/spawn', { body, idempotencyKey });
  const second = await agency.request('POST', '/spawn', { body, idempotencyKey });
  assert.equal(first.status, 202);
  assert.equal(first.replayed, false);
  assert.equal(first.idempotencyKey, idempotencyKey);
  assert.equal(second.status, 202);
  assert.equal(second.replayed, true);
  assert.equal(second.headers.get('idempotent-replayed'), 'true');
  assert.equal(second.data.agent_id, first.data.agent_id);

  // Through spawn(): the same agent again; a different body with the key is a Conflict.
  const again = await agency.spawn(body, { idempotencyKey });
  assert.equal(again.id, first.data.agent_id);
  await assert.rejects(agency.spawn({ ...body, priority: 'high' }, { idempotencyKey }), (error) => {
    assert.ok(error instanceof Conflict);
    assert.match(error.message, /Idempotency key payload mismatch/);
    return true;
  });

  // Without a key of its own, every write gets a fresh one: two calls, two agents.
  const one = await agency.request('POST', '/spawn', { body });
  const two = await agency.request('POST', '/spawn', { body });
  assert.match(one.idempotencyKey, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.notEqual(one.idempotencyKey, two.idempotencyKey);
  assert.equal(two.replayed, false);
  assert.notEqual(one.data.agent_id, two.data.agent_id);
});

test('service endpoints: health, limits, status, recommend, billing, active', opts, async () => {
  const agency = makeAgency();
  const health = await agency.health();
  assert.ok(['healthy', 'degraded', 'unhealthy'].includes(health.status));
  assert.equal(typeof health.uptime_seconds, 'number');

  const limits = await agency.rateLimits();
  assert.ok(limits.limits && typeof limits.limits === 'object');

  const status = await agency.orchestratorStatus();
  assert.equal(typeof status.budget_utilization_pct, 'number');
  assert.ok(['ok', 'notice', 'warning', 'critical'].includes(status.budget_alert_level));

  const choice = await agency.recommendModel({ taskType: 'coding', complexity: 'high', estimatedTokens: 2500 });
  assert.ok('recommended_model' in choice);
  assert.equal(typeof choice.budget_available, 'boolean');

  const usage = await agency.billingUsage();
  assert.equal(typeof usage.total_cost, 'number');
  assert.ok(usage.by_model && usage.by_day);
  const csv = await agency.billingUsage({ format: 'csv' });
  assert.equal(typeof csv, 'string');
  assert.match(csv, /^day,model,provider,key_id,calls,input_tokens,output_tokens,cost/);

  const active = await agency.activeAgents();
  assert.ok(Array.isArray(active.agents));
  assert.equal(active.count, active.agents.length);
});

test('events: the whole feed by cursor, and following it', opts, async () => {
  const agency = makeAgency();
  const agent = await agency.spawn({ model: 'k2p5', task: marker('events') });
  await agent.waitForCompletion({ pollIntervalMs: 100 });

  let last = 0;
  let found = false;
  let count = 0;
  for await (const event of agency.events({ limit: 25 })) {
    const id = Number(event.id.replace('evt_', ''));
    assert.ok(id > last, 'oldest first, no repeats');
    last = id;
    count += 1;
    if (event.type === 'agent.completed' && event.data.agent_id === agent.id) found = true;
  }
  assert.ok(found, `agent.completed of ${agent.id} among ${count} events`);

  // follow: keeps polling until the event we wait for arrives.
  const later = await agency.spawn({ model: 'k2p5', task: marker('follow') });
  const deadline = Date.now() + 15000;
  for await (const event of agency.events({ type: 'agent.completed', follow: true, pollIntervalMs: 100 })) {
    assert.equal(event.type, 'agent.completed');
    if (event.data.agent_id === later.id) break;
    assert.ok(Date.now() < deadline, 'the followed event never came');
  }
});

test('getAgent and refresh return the full agent object', opts, async () => {
  const agency = makeAgency();
  const spawned = await agency.spawn({ model: 'k2p5', task: marker('get'), timeout: 60 });
  const result = await spawned.waitForCompletion({ pollIntervalMs: 100 });
  assert.ok(result instanceof Result);
  const fetched = await agency.getAgent(spawned.id);
  assert.equal(fetched.id, spawned.id);
  assert.equal(fetched.status, 'completed');
  assert.equal(fetched.data.timeout, 60);
  assert.equal(fetched.data.cost, result.cost);
  assert.equal(fetched.data.result, result.output);
  assert.deepEqual(JSON.parse(JSON.stringify(fetched)), fetched.data);
});
