// The package loads with import, by file and by name, as the same objects as require().
import test from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

import { Agency, Agent, Result, NotFound, J1mskyError, VERSION } from '../index.mjs';
import byName, { Agency as AgencyByName } from 'j1msky-sdk';

const require = createRequire(import.meta.url);
const cjs = require('../index.cjs');
const { live, marker } = require('./_support.cjs');

test('import gives the CommonJS objects (one implementation)', () => {
  assert.equal(Agency, cjs.Agency);
  assert.equal(AgencyByName, cjs.Agency);
  assert.equal(byName, cjs);
  assert.equal(NotFound, cjs.NotFound);
  assert.equal(VERSION, '4.0.0');
});

test('ESM client: spawn, wait, NotFound', { skip: live.skip, timeout: 30000 }, async () => {
  const agency = new Agency({ apiKey: live.key, baseUrl: live.url });
  const agent = await agency.spawn({ model: 'sonnet', task: marker('esm') });
  assert.ok(agent instanceof Agent);
  const result = await agent.waitForCompletion({ pollIntervalMs: 200 });
  assert.ok(result instanceof Result);
  assert.equal(result.status, 'completed');
  assert.ok(result.output.length > 0);
  await assert.rejects(agency.getAgent('subagent_1_1'), (error) => {
    assert.ok(error instanceof NotFound);
    assert.ok(error instanceof J1mskyError);
    return true;
  });
});
