'use strict';
// Shared by the test files (node --test runs this file too; it holds no tests).
// Live tests need a running J1MSKY: J1MSKY_URL and J1MSKY_KEY (agents:read, agents:write,
// billing:read, admin:write); signing tests also J1MSKY_SIGNING_KEY and
// J1MSKY_SIGNING_SECRET (a key created with --signing --require-signature); the rate-limit
// test J1MSKY_LIMITED_KEY (agents:write, spawning until the server's per-key spawn limit).
// tests/e2e/test_js_sdk.py starts such a server and sets them all.

const crypto = require('node:crypto');
const { Agency } = require('../index.cjs');

const env = process.env;
const URL_ = env.J1MSKY_URL;
const KEY = env.J1MSKY_KEY;

function missing(...names) {
  const absent = names.filter((name) => !env[name]);
  return absent.length ? `${absent.join(', ')} not set: skipping tests that need a live J1MSKY server` : false;
}

const live = {
  url: URL_,
  key: KEY,
  signingKey: env.J1MSKY_SIGNING_KEY,
  signingSecret: env.J1MSKY_SIGNING_SECRET,
  limitedKey: env.J1MSKY_LIMITED_KEY,
  skip: missing('J1MSKY_URL', 'J1MSKY_KEY'),
  skipSigning: missing('J1MSKY_URL', 'J1MSKY_SIGNING_KEY', 'J1MSKY_SIGNING_SECRET'),
  skipLimited: missing('J1MSKY_URL', 'J1MSKY_LIMITED_KEY'),
};

/** An Agency on the live server with fast retries (so a test never sleeps long). */
function agency(options = {}) {
  return new Agency({ apiKey: KEY, baseUrl: URL_, backoffBaseMs: 50, backoffMaxMs: 2000,
    timeoutMs: 10000, ...options });
}

/** A marker to find this run's agents among everything the server ever ran. */
function marker(label) {
  return `${label}-${crypto.randomUUID()}`;
}

module.exports = { live, agency, marker };
