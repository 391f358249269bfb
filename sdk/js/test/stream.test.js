'use strict';
// The live event stream against the live server (tests/e2e/test_js_sdk.py runs it with
// streams.max_seconds of 1 s, so every test here crosses server-side closes).
const test = require('node:test');
const assert = require('node:assert/strict');
const { LiveEvents } = require('j1msky-sdk');
const { live, agency: makeAgency, marker } = require('./_support.cjs');

const opts = { skip: live.skip, timeout: 30000 };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Every event of the feed after `cursor`. */
async function feedAfter(agency, cursor) {
  const seen = [];
  for await (const event of agency.events({ cursor })) seen.push(event);
  return seen;
}

/** Events from `stream` until `count` of them satisfy `mine` (or the stream ends). */
async function take(stream, count, mine = () => true) {
  const got = [];
  let found = 0;
  for await (const event of stream) {
    got.push(event);
    found += mine(event) ? 1 : 0;
    if (found === count) break;
  }
  return got;
}

test('streamEvents reconnects across server closes and resumes by lastEventId', opts, async () => {
  const agency = makeAgency();
  const tag = marker('stream');
  const mine = (event) => event.data.task.startsWith(tag);
  const stream = await agency.streamEvents({ types: ['agent.completed'] }).connect();
  assert.ok(stream instanceof LiveEvents);
  const start = stream.lastEventId;
  const spawning = (async () => {
    for (let round = 0; round < 4; round++) { // about 2 s: the server closes the stream twice
      await agency.spawnBatch([1, 2, 3].map((n) => ({ model: 'k2p5', task: `${tag} ${round}.${n}` })));
      await sleep(500);
    }
  })();
  const first = await take(stream, 6, mine);
  await spawning;
  const rest = await take(agency.streamEvents({ types: ['agent.completed'],
    lastEventId: stream.lastEventId }), 6, mine);
  const ours = [...first, ...rest];
  const expected = (await feedAfter(agency, start)).filter((e) => e.type === 'agent.completed');
  assert.deepEqual(ours.map((e) => e.id), expected.slice(0, ours.length).map((e) => e.id));
  assert.equal(ours.filter(mine).length, 12);
});

test('streamEvents ends when its signal aborts', opts, async () => {
  const agency = makeAgency();
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 300);
  const began = Date.now();
  const got = await take(agency.streamEvents({ types: ['key.revoked'], signal: controller.signal }), 1);
  assert.deepEqual(got, []);
  assert.ok(Date.now() - began < 3000);
});

test('a bad type filter is a ValidationError', opts, async () => {
  const agency = makeAgency();
  await assert.rejects(agency.streamEvents({ types: ['agent.exploded'] }).connect(),
    (error) => error.status === 400 && /unknown event type/.test(error.message));
});
