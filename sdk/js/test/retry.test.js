'use strict';
// Retries, backoff, signing and error mapping against a tiny local node:http server
// (no J1MSKY needed): each test scripts the answers the SDK gets.
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const crypto = require('node:crypto');
const {
  Agency, RateLimitError, ServerError, ValidationError, Conflict, NetworkError, J1mskyError,
} = require('j1msky-sdk');

/** Serve scripted answers: `answers[n]` (or the last one) for the n-th request. */
async function scripted(answers) {
  const requests = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      requests.push({ method: req.method, url: req.url, headers: req.headers, body, at: Date.now() });
      const answer = answers[Math.min(requests.length - 1, answers.length - 1)];
      if (answer.hang) return; // never answer
      const headers = { 'X-Request-Id': `req_local${requests.length}`, ...(answer.headers || {}) };
      let payload = answer.body;
      if (payload !== undefined && typeof payload !== 'string') {
        payload = JSON.stringify(payload);
        headers['Content-Type'] = 'application/json';
      }
      res.writeHead(answer.status, headers);
      res.end(payload);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    requests,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

function apiError(status, message, extra = {}) {
  return { success: false, error: { code: status, message, request_id: 'req_fromBody', ...extra } };
}

const SPAWNED = { status: 202, body: { success: true, agent_id: 'subagent_1_1', status: 'spawning' } };

test('429 with retry_after: waits that long, then retries with the same Idempotency-Key', async (t) => {
  const server = await scripted([
    { status: 429, body: apiError(429, 'Rate limit exceeded', { retry_after: 1 }), headers: { 'Retry-After': '1' } },
    SPAWNED,
  ]);
  t.after(server.close);
  const agency = new Agency({ apiKey: 'live_sk_test', baseUrl: server.url, backoffBaseMs: 10 });
  const started = Date.now();
  const agent = await agency.spawn({ model: 'k2p5', task: 'retry me' });
  assert.equal(agent.id, 'subagent_1_1');
  assert.equal(server.requests.length, 2);
  const [first, second] = server.requests;
  assert.ok(second.at - first.at >= 1000, `waited ${second.at - first.at} ms, server said 1 s`);
  assert.ok(Date.now() - started < 2500);
  assert.match(first.headers['idempotency-key'], /^[0-9a-f-]{36}$/);
  assert.equal(second.headers['idempotency-key'], first.headers['idempotency-key']);
  assert.equal(second.body, first.body);
  assert.equal(first.url, '/api/spawn');
  assert.equal(first.headers.authorization, 'Bearer live_sk_test');
  assert.equal(first.headers['content-type'], 'application/json');
  assert.deepEqual(JSON.parse(first.body), { model: 'k2p5', task: 'retry me' });
});

test('503 with only a Retry-After header is honoured too (GET: no Idempotency-Key)', async (t) => {
  const server = await scripted([
    { status: 503, body: 'upstream busy', headers: { 'Retry-After': '1' } },
    { status: 200, body: { status: 'healthy' } },
  ]);
  t.after(server.close);
  const agency = new Agency({ apiKey: 'k', baseUrl: server.url, backoffBaseMs: 10 });
  assert.deepEqual(await agency.health(), { status: 'healthy' });
  const [first, second] = server.requests;
  assert.ok(second.at - first.at >= 1000, `waited ${second.at - first.at} ms`);
  assert.equal(first.headers['idempotency-key'], undefined);
});

test('without retry_after: exponential backoff, then the last error', async (t) => {
  const server = await scripted([{ status: 429, body: apiError(429, 'Slow down') }]);
  t.after(server.close);
  const agency = new Agency({ apiKey: 'k', baseUrl: server.url, maxRetries: 3, backoffBaseMs: 40, backoffMaxMs: 1000 });
  await assert.rejects(agency.cancel('subagent_1_1'), (error) => {
    assert.ok(error instanceof RateLimitError);
    assert.equal(error.message, 'Slow down');
    assert.equal(error.requestId, 'req_fromBody');
    assert.equal(error.retryAfter, null);
    return true;
  });
  assert.equal(server.requests.length, 4, 'first try + 3 retries');
  const gaps = server.requests.slice(1).map((r, i) => r.at - server.requests[i].at);
  // 40, 80, 160 ms (+ up to 10% jitter): each wait about twice the one before.
  assert.ok(gaps[0] >= 38 && gaps[1] >= 78 && gaps[2] >= 158, gaps.join(','));
  const keys = new Set(server.requests.map((r) => r.headers['idempotency-key']));
  assert.equal(keys.size, 1, 'one Idempotency-Key for the call and all its retries');
  assert.equal(server.requests[0].method, 'DELETE');
});

test('a retry_after longer than backoffMaxMs is not waited out', async (t) => {
  const server = await scripted([
    { status: 429, body: apiError(429, 'Daily budget exhausted', { retry_after: 3600 }), headers: { 'Retry-After': '3600' } },
  ]);
  t.after(server.close);
  const agency = new Agency({ apiKey: 'k', baseUrl: server.url, backoffMaxMs: 5000 });
  const started = Date.now();
  await assert.rejects(agency.spawn({ task: 'x' }), (error) => {
    assert.ok(error instanceof RateLimitError);
    assert.equal(error.retryAfter, 3600);
    return true;
  });
  assert.equal(server.requests.length, 1);
  assert.ok(Date.now() - started < 1000);
});

test('maxRetries: 0 never retries; 400 and 500 are not retried', async (t) => {
  const server = await scripted([
    { status: 503, body: apiError(503, 'Model unavailable', { retry_after: 60 }) },
    { status: 400, body: apiError(400, 'Task cannot be empty', { details: { task: ['Task cannot be empty'] } }) },
    { status: 500, body: '<html>oops</html>', headers: { 'Content-Type': 'text/html' } },
  ]);
  t.after(server.close);
  const agency = new Agency({ apiKey: 'k', baseUrl: server.url, maxRetries: 0 });
  await assert.rejects(agency.spawn({ task: 'x' }), (e) => e instanceof ServerError && e.status === 503 && e.retryAfter === 60);
  const retrying = new Agency({ apiKey: 'k', baseUrl: server.url, backoffBaseMs: 10 });
  await assert.rejects(retrying.spawn({ task: '' }), (error) => {
    assert.ok(error instanceof ValidationError);
    assert.deepEqual(error.details, { task: ['Task cannot be empty'] });
    return true;
  });
  await assert.rejects(retrying.health(), (error) => {
    assert.ok(error instanceof ServerError);
    assert.equal(error.status, 500);
    assert.equal(error.requestId, 'req_local3', 'from X-Request-Id when the body has none');
    assert.match(error.message, /oops/);
    return true;
  });
  assert.equal(server.requests.length, 3);
});

test('409 "in progress" on a retry is retried; the old string error shape is understood', async (t) => {
  const server = await scripted([
    { status: 503, body: apiError(503, 'busy', { retry_after: 0 }) },
    { status: 409, body: apiError(409, 'Request with this idempotency key is in progress') },
    SPAWNED,
    { status: 409, body: { success: false, error: 'Idempotency key payload mismatch' } },
  ]);
  t.after(server.close);
  const agency = new Agency({ apiKey: 'k', baseUrl: server.url, backoffBaseMs: 10 });
  assert.equal((await agency.spawn({ task: 'x' })).id, 'subagent_1_1');
  assert.equal(server.requests.length, 3);
  await assert.rejects(agency.spawn({ task: 'y' }), (error) => {
    assert.ok(error instanceof Conflict);
    assert.equal(error.message, 'Idempotency key payload mismatch');
    return true;
  });
  assert.equal(server.requests.length, 4, 'a first-attempt 409 is final');
});

test('every attempt is signed afresh over the path, query and exact body', async (t) => {
  const server = await scripted([
    { status: 429, body: apiError(429, 'Rate limit exceeded', { retry_after: 0.05 }) },
    { status: 200, body: { data: [], pagination: { has_more: false } } },
  ]);
  t.after(server.close);
  const secret = 'sig_secret_123';
  const agency = new Agency({ apiKey: 'k', apiSecret: secret, baseUrl: `${server.url}/api/v4` });
  const page = await agency.agentsPage({ status: 'completed', filter: { task: { contains: 'ä b&c' } }, limit: 5 });
  assert.deepEqual(page.agents, []);
  assert.equal(page.nextCursor, null);
  const signatures = new Set();
  for (const req of server.requests) {
    assert.ok(req.url.startsWith('/api/v4/agents?'), req.url);
    assert.ok(!/[ "{}]/.test(req.url), `query sent encoded: ${req.url}`);
    const timestamp = req.headers['x-timestamp'];
    assert.match(timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(Math.abs(Date.parse(timestamp) - req.at) < 5000);
    const expected = crypto.createHmac('sha256', secret)
      .update(`${timestamp}\nGET\n${req.url}\n`).digest('hex');
    assert.equal(req.headers['x-signature'], expected);
    signatures.add(req.headers['x-signature']);
  }
  assert.equal(signatures.size, 2, 'a retry never resends a used signature');

  const post = await scripted([SPAWNED]);
  t.after(post.close);
  const poster = new Agency({ apiKey: 'k', apiSecret: secret, baseUrl: post.url });
  await poster.spawn({ model: 'k2p5', task: 'naïve café ✓' });
  const [req] = post.requests;
  const expected = crypto.createHmac('sha256', secret)
    .update(`${req.headers['x-timestamp']}\nPOST\n/api/spawn\n${req.body}`).digest('hex');
  assert.equal(req.headers['x-signature'], expected);
  assert.equal(req.body, JSON.stringify({ model: 'k2p5', task: 'naïve café ✓' }));
});

test('network failures and timeouts are NetworkErrors, retried first', async (t) => {
  const server = await scripted([{ hang: true }]);
  t.after(server.close);
  const agency = new Agency({ apiKey: 'k', baseUrl: server.url, timeoutMs: 100, maxRetries: 1, backoffBaseMs: 10 });
  await assert.rejects(agency.health(), (error) => {
    assert.ok(error instanceof NetworkError);
    assert.ok(error instanceof J1mskyError);
    assert.equal(error.status, null);
    assert.match(error.message, /timed out after 100 ms/);
    return true;
  });
  assert.equal(server.requests.length, 2);

  const closed = await scripted([SPAWNED]);
  await closed.close();
  const refused = new Agency({ apiKey: 'k', baseUrl: closed.url, maxRetries: 2, backoffBaseMs: 10 });
  await assert.rejects(refused.spawn({ task: 'x' }), (error) => {
    assert.ok(error instanceof NetworkError);
    assert.match(error.message, /ECONNREFUSED|connect/i);
    return true;
  });
});

test('waitForCompletion polls until the agent finishes where no event stream opens', async (t) => {
  const running = { status: 200, body: { agent_id: 'subagent_1_1', status: 'running' } };
  const server = await scripted([
    SPAWNED, { status: 404, body: apiError(404, 'Not found') }, running, running,
    { status: 200, body: { agent_id: 'subagent_1_1', status: 'failed', result: null, error: 'Timed out', cost: 0.01, usage: { input_tokens: 3, output_tokens: 0 } } },
  ]);
  t.after(server.close);
  const agency = new Agency({ apiKey: 'k', baseUrl: server.url });
  const agent = await agency.spawn({ task: 'x' });
  const result = await agent.waitForCompletion({ pollIntervalMs: 20 });
  assert.equal(result.status, 'failed');
  assert.equal(result.error, 'Timed out');
  assert.equal(result.ok, false);
  assert.equal(result.cost, 0.01);
  assert.deepEqual(result.usage, { input_tokens: 3, output_tokens: 0 });
  assert.equal(server.requests.length, 5);
  assert.match(server.requests[1].url, /^\/api\/events\/stream\?type=agent\.completed/);
  assert.equal(server.requests[1].headers.accept, 'text/event-stream');
  assert.ok(server.requests.slice(2).every((r) => r.method === 'GET' && r.url === '/api/agent/subagent_1_1'));
});
