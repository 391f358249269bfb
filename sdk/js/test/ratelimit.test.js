'use strict';
// A key that runs into the server's per-key spawn limit gets a RateLimitError with retryAfter.
const test = require('node:test');
const assert = require('node:assert/strict');
const { Agency, RateLimitError } = require('j1msky-sdk');
const { live, marker } = require('./_support.cjs');

test('RateLimitError carries retryAfter, and a long retry_after is not waited out',
  { skip: live.skipLimited, timeout: 30000 }, async () => {
    const agency = new Agency({ apiKey: live.limitedKey, baseUrl: live.url, maxRetries: 0 });
    let refused;
    for (let n = 0; n < 500 && !refused; n++) {
      try {
        await agency.spawn({ model: 'k2p5', task: marker(`limited ${n}`) });
      } catch (error) {
        if (!(error instanceof RateLimitError)) throw error;
        refused = error;
      }
    }
    assert.ok(refused, 'the spawn limit never answered 429');
    assert.equal(refused.status, 429);
    assert.equal(refused.name, 'RateLimitError');
    assert.equal(refused.message, 'Rate limit exceeded');
    assert.equal(typeof refused.retryAfter, 'number');
    assert.ok(refused.retryAfter >= 1, `retryAfter ${refused.retryAfter}`);
    assert.equal(refused.headers.get('retry-after'), String(refused.retryAfter));
    assert.equal(refused.headers.get('x-ratelimit-remaining'), '0');
    assert.match(refused.requestId, /^req_/);

    // Default retries, but the window is far longer than backoffMaxMs: thrown at once.
    const patient = new Agency({ apiKey: live.limitedKey, baseUrl: live.url, backoffMaxMs: 500 });
    const started = Date.now();
    await assert.rejects(patient.spawn({ model: 'k2p5', task: 'one more' }), RateLimitError);
    assert.ok(Date.now() - started < 3000, 'did not sleep through the window');
  });
