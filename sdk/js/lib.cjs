'use strict';
/**
 * J1MSKY JavaScript SDK (CommonJS; index.mjs re-exports it for ESM).
 *
 * No dependencies: Node >= 18's global fetch and node:crypto.
 *
 *   const { Agency } = require('j1msky-sdk');
 *   const agency = new Agency({ apiKey: 'YOUR_KEY', baseUrl: 'http://localhost:8080' });
 *   const agent = await agency.spawn({ model: 'k2p5', task: 'Write a blog post about AI' });
 *   const result = await agent.waitForCompletion();
 *   console.log(result.output);
 */

const crypto = require('node:crypto');

const VERSION = '4.0.0';
const FINISHED = Object.freeze(['completed', 'failed', 'cancelled']);
const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const RETRY_STATUSES = new Set([429, 503]);

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/** Any failure the API reports (or a request that could not be completed). */
class J1mskyError extends Error {
  constructor(message, { status = null, code = null, requestId = null, details = null,
    retryAfter = null, body = null, headers = null, method = null, url = null,
    cause = undefined } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = new.target.name;
    /** HTTP status (null when no response arrived). */
    this.status = status;
    /** `error.code` of the body (the HTTP status again, per the contract). */
    this.code = code;
    /** `error.request_id` or the X-Request-Id header: quote it when reporting a problem. */
    this.requestId = requestId;
    /** Validation details: field -> messages (400). */
    this.details = details;
    /** Seconds to wait before retrying (429/503), from `retry_after` or `Retry-After`. */
    this.retryAfter = retryAfter;
    /** The parsed error body. */
    this.body = body;
    /** The response headers (a Headers object), when there was a response. */
    this.headers = headers;
    this.method = method;
    this.url = url;
  }
}

/** 400/413/422: the request was refused as invalid; `details` names the fields. */
class ValidationError extends J1mskyError {}
/** 401 (missing, invalid, expired key or bad signature) and 403 (missing scope, IP refused). */
class AuthError extends J1mskyError {}
/** 404: no such agent, webhook, key or route. */
class NotFound extends J1mskyError {}
/** 409: e.g. cancelling a finished agent, or an Idempotency-Key reused for another request. */
class Conflict extends J1mskyError {}
/** 429: a rate limit, the daily budget or a concurrency limit; see `retryAfter`. */
class RateLimitError extends J1mskyError {}
/** 5xx. */
class ServerError extends J1mskyError {}
/** No response: connection refused/reset, DNS failure, or the per-request timeout passed. */
class NetworkError extends J1mskyError {}
/** waitForCompletion's timeout passed before the agent finished (the agent keeps running). */
class WaitTimeoutError extends J1mskyError {}

function errorClassFor(status) {
  if (status === 400 || status === 413 || status === 422) return ValidationError;
  if (status === 401 || status === 403) return AuthError;
  if (status === 404) return NotFound;
  if (status === 409) return Conflict;
  if (status === 429) return RateLimitError;
  if (status >= 500) return ServerError;
  return J1mskyError;
}

/** Seconds from a Retry-After header: delta-seconds or an HTTP-date. */
function parseRetryAfterHeader(value) {
  if (value == null || value === '') return null;
  const trimmed = String(value).trim();
  if (/^\d+(\.\d+)?$/.test(trimmed)) return Number(trimmed);
  const when = Date.parse(trimmed);
  if (Number.isNaN(when)) return null;
  return Math.max(0, (when - Date.now()) / 1000);
}

function errorFromResponse(status, headers, body, method, url) {
  let error = body && typeof body === 'object' ? body.error : undefined;
  let message;
  if (typeof error === 'string') {
    message = error;
    error = {};
  } else if (error && typeof error === 'object') {
    message = error.message;
  } else {
    error = {};
  }
  if (!message) {
    message = typeof body === 'string' && body.trim() ? body.trim().slice(0, 500)
      : `HTTP ${status}`;
  }
  let retryAfter = typeof error.retry_after === 'number' ? error.retry_after : null;
  if (retryAfter === null) retryAfter = parseRetryAfterHeader(headers.get('retry-after'));
  const Cls = errorClassFor(status);
  return new Cls(message, {
    status,
    code: error.code ?? status,
    requestId: error.request_id ?? headers.get('x-request-id'),
    details: error.details ?? null,
    retryAfter,
    body,
    headers,
    method,
    url,
  });
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Drop undefined values (so optional fields are simply not sent). */
function compact(object) {
  const out = {};
  for (const [key, value] of Object.entries(object || {})) {
    if (value !== undefined) out[key] = value;
  }
  return out;
}

function queryString(query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query || {})) {
    if (value === undefined || value === null || value === '') continue;
    if (value instanceof Date) params.append(key, value.toISOString());
    else if (typeof value === 'object') params.append(key, JSON.stringify(value));
    else params.append(key, String(value));
  }
  return params.toString();
}

/** The API root: `baseUrl` + `/api`, unless baseUrl already ends in /api or /api/vN. */
function apiRoot(baseUrl) {
  const url = new URL(baseUrl);
  let path = url.pathname.replace(/\/+$/, '');
  if (!/\/api(\/v\d+)?$/.test(path)) path += '/api';
  url.pathname = path;
  url.search = '';
  url.hash = '';
  return url.toString().replace(/\/+$/, '');
}

/**
 * Headers of a signed request (CONTRACT §3): X-Timestamp (ISO 8601 UTC) and
 * X-Signature = hex HMAC-SHA256 of `${timestamp}\n${METHOD}\n${path}\n${body}`,
 * path being the request path plus `?query` when there is one, body the exact
 * string sent ('' when none).
 */
function signRequest(apiSecret, method, path, body = '', timestamp = new Date().toISOString()) {
  const message = `${timestamp}\n${method.toUpperCase()}\n${path}\n${body}`;
  const signature = crypto.createHmac('sha256', apiSecret).update(message, 'utf8').digest('hex');
  return { 'X-Timestamp': timestamp, 'X-Signature': signature };
}

function isFinished(status) {
  return FINISHED.includes(status);
}

// ---------------------------------------------------------------------------
// Agents and results
// ---------------------------------------------------------------------------

/** The outcome of a finished agent. */
class Result {
  constructor(agent) {
    const data = agent.data;
    Object.defineProperty(this, 'agent', { value: agent, enumerable: false });
    this.agentId = agent.id;
    this.status = data.status;
    this.output = data.result ?? null;
    this.cost = data.cost ?? data.actual_cost ?? null;
    this.usage = data.usage ?? null;
    this.error = data.error ?? null;
    this.model = data.model ?? null;
    this.steps = data.steps ?? null;
    this.simulated = data.simulated ?? false;
  }

  /** True when the agent completed. */
  get ok() {
    return this.status === 'completed';
  }

  toString() {
    return this.output ?? '';
  }
}

/** One agent: `id`, the last known `data`, and ways to follow it. */
class Agent {
  constructor(agency, data) {
    Object.defineProperty(this, 'agency', { value: agency, enumerable: false });
    this.id = data.agent_id;
    this.data = data;
  }

  get status() {
    return this.data.status;
  }

  /** True once the agent is completed, failed or cancelled. */
  get finished() {
    return isFinished(this.data.status);
  }

  /** Fetch the agent's current state into `data`; returns this agent. */
  async refresh(options) {
    this.data = await this.agency.request('GET', `/agent/${encodeURIComponent(this.id)}`, options)
      .then((response) => response.data);
    return this;
  }

  /** Cancel the agent (Conflict once it has finished); returns `{refund, ...}`. */
  async cancel(options) {
    const answer = await this.agency.cancel(this.id, options);
    this.data = { ...this.data, status: answer.status || 'cancelled' };
    return answer;
  }

  /**
   * Wait until the agent is completed, failed or cancelled and return its Result
   * (a failed agent is a Result with `status: 'failed'` and `error`, not an exception).
   * Listens on the live event stream; where none opens (503: too many open, 404: an
   * older server) it polls, quickly at first, then every
   * `pollIntervalMs`. Throws WaitTimeoutError after `timeoutMs` (default 10 minutes);
   * the agent itself keeps going.
   */
  async waitForCompletion({ timeoutMs = 600000, pollIntervalMs = 1000 } = {}) {
    const deadline = Date.now() + timeoutMs;
    const events = this.agency.streamEvents({
      types: FINISHED.map((status) => `agent.${status}`), deadline });
    try {
      await events.connect(); // before the first look: a finish after it is on the stream
    } catch {
      // No stream (503: too many open; 404: an older server): polling answers, or says why not.
      return this.pollForCompletion(deadline, timeoutMs, pollIntervalMs);
    }
    try {
      await this.refresh();
      if (this.finished) return new Result(this);
      for await (const event of events) {
        if (event.data && event.data.agent_id === this.id) {
          await this.refresh();
          return new Result(this);
        }
      }
    } finally {
      events.close();
    }
    throw new WaitTimeoutError(
      `Agent ${this.id} still ${this.status} after ${timeoutMs} ms`, { status: null });
  }

  async pollForCompletion(deadline, timeoutMs, pollIntervalMs) {
    let interval = Math.min(100, pollIntervalMs);
    for (;;) {
      await this.refresh();
      if (this.finished) return new Result(this);
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new WaitTimeoutError(
          `Agent ${this.id} still ${this.status} after ${timeoutMs} ms`, { status: null });
      }
      await sleep(Math.min(interval, left));
      interval = Math.min(interval * 2, pollIntervalMs);
    }
  }

  toJSON() {
    return this.data;
  }
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

class Agency {
  /**
   * @param {object} options
   * @param {string} options.apiKey        Bearer key (default: $J1MSKY_API_KEY)
   * @param {string} [options.baseUrl]     e.g. http://raspberrypi.local:8080 (/api is added)
   * @param {string} [options.apiSecret]   signing secret: every request is HMAC-signed
   * @param {number} [options.timeoutMs]   per attempt (default 30000)
   * @param {number} [options.maxRetries]  retries after the first attempt on 429/503 and
   *                                       network errors (default 3)
   * @param {number} [options.backoffBaseMs] first backoff (default 1000), doubled each retry
   * @param {number} [options.backoffMaxMs]  backoff cap (default 60000); a server
   *                                       retry_after longer than this is not waited out:
   *                                       the RateLimitError is thrown at once
   * @param {Function} [options.fetch]     a fetch implementation (default: global fetch)
   * @param {object} [options.headers]     extra headers for every request
   */
  constructor({
    apiKey = process.env.J1MSKY_API_KEY,
    baseUrl = 'http://localhost:8080',
    apiSecret = undefined,
    timeoutMs = 30000,
    maxRetries = 3,
    backoffBaseMs = 1000,
    backoffMaxMs = 60000,
    fetch: fetchImpl = globalThis.fetch,
    headers = {},
  } = {}) {
    if (!apiKey) throw new TypeError('Agency needs an apiKey (or J1MSKY_API_KEY in the environment)');
    if (typeof fetchImpl !== 'function') {
      throw new TypeError('No fetch available: use Node.js 18 or later, or pass options.fetch');
    }
    Object.defineProperty(this, 'apiKey', { value: apiKey, enumerable: false });
    Object.defineProperty(this, 'apiSecret', { value: apiSecret || null, enumerable: false });
    this.baseUrl = baseUrl;
    this.apiRoot = apiRoot(baseUrl);
    this.timeoutMs = timeoutMs;
    this.maxRetries = maxRetries;
    this.backoffBaseMs = backoffBaseMs;
    this.backoffMaxMs = backoffMaxMs;
    this.defaultHeaders = { ...headers };
    Object.defineProperty(this, 'fetchImpl', { value: fetchImpl, enumerable: false });
    this.webhooks = new Webhooks(this);
    this.keys = new Keys(this);
  }

  /**
   * The wait before retry number `attempt` (0-based): the server's retry_after when it
   * gave one, else backoffBaseMs * 2^attempt capped at backoffMaxMs; plus up to 10% jitter.
   */
  backoffMs(attempt, retryAfterSeconds = null) {
    const delay = retryAfterSeconds > 0 ? retryAfterSeconds * 1000
      : Math.min(this.backoffBaseMs * 2 ** attempt, this.backoffMaxMs);
    return delay + Math.random() * 0.1 * delay;
  }

  /**
   * One API call, with retries. Returns `{status, headers, data, requestId,
   * idempotencyKey, replayed}`; throws a J1mskyError subclass for any error answer.
   *
   * Writes (POST/PUT/PATCH/DELETE) carry an Idempotency-Key (a random UUID unless
   * `idempotencyKey` is given) that every retry of this call reuses, so a retry
   * never runs the work twice. 429 and 503 are retried after the server's
   * retry_after (or exponential backoff with jitter); so are network errors.
   *
   * @param {string} method
   * @param {string} path    below the API root, e.g. '/spawn'
   * @param {object} [options] {query, body, idempotencyKey, headers, timeoutMs, maxRetries}
   */
  async request(method, path, options = {}) {
    method = method.toUpperCase();
    const { query, body, headers = {} } = options;
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const maxRetries = options.maxRetries ?? this.maxRetries;
    const qs = queryString(query);
    const url = new URL(this.apiRoot + path + (qs ? `?${qs}` : ''));
    // What the server will see: the decoded path, and the query exactly as sent.
    const signedPath = decodeURIComponent(url.pathname) + url.search;
    const bodyText = body === undefined ? '' : (typeof body === 'string' ? body : JSON.stringify(body));
    let idempotencyKey = null;
    if (WRITE_METHODS.has(method) && options.idempotencyKey !== null) {
      idempotencyKey = options.idempotencyKey || crypto.randomUUID();
    }

    for (let attempt = 0; ; attempt++) {
      const extra = { ...headers };
      if (body !== undefined) extra['Content-Type'] = 'application/json';
      if (idempotencyKey) extra['Idempotency-Key'] = idempotencyKey;
      const sent = this.headersFor(method, signedPath, bodyText, extra);

      let response;
      let error;
      try {
        response = await this.fetchImpl(url, {
          method,
          headers: sent,
          body: body === undefined ? undefined : bodyText,
          signal: AbortSignal.timeout(timeoutMs),
          redirect: 'manual',
        });
      } catch (cause) {
        const timedOut = cause && (cause.name === 'TimeoutError' || cause.name === 'AbortError');
        error = new NetworkError(
          timedOut ? `${method} ${url.pathname} timed out after ${timeoutMs} ms`
            : `${method} ${url.pathname} failed: ${(cause && cause.cause && cause.cause.message) || (cause && cause.message) || cause}`,
          { method, url: url.toString(), cause });
      }

      if (response) {
        const text = await response.text();
        const type = response.headers.get('content-type') || '';
        let data = text;
        if (type.includes('json') && text) {
          try {
            data = JSON.parse(text);
          } catch {
            data = text;
          }
        } else if (!text) {
          data = null;
        }
        if (response.ok) {
          return {
            status: response.status,
            headers: response.headers,
            data,
            requestId: response.headers.get('x-request-id'),
            idempotencyKey,
            replayed: response.headers.get('idempotent-replayed') === 'true',
          };
        }
        error = errorFromResponse(response.status, response.headers, data, method, url.toString());
      }

      if (attempt >= maxRetries || !this.retryable(error, attempt)) throw error;
      const retryAfter = error.retryAfter;
      if (retryAfter != null && retryAfter * 1000 > this.backoffMaxMs) throw error;
      await sleep(this.backoffMs(attempt, retryAfter));
    }
  }

  /**
   * The headers of one attempt: defaults, the key, `extra`, and a signature when the
   * client has a secret (fresh per attempt: the server refuses a replayed signature).
   */
  headersFor(method, signedPath, bodyText, extra = {}) {
    const sent = {
      Accept: 'application/json',
      'User-Agent': `j1msky-sdk-js/${VERSION} node/${process.version}`,
      ...this.defaultHeaders,
      Authorization: `Bearer ${this.apiKey}`,
      ...extra,
    };
    if (this.apiSecret) Object.assign(sent, signRequest(this.apiSecret, method, signedPath, bodyText));
    return sent;
  }

  /** Whether a failed attempt is worth repeating with the same Idempotency-Key. */
  retryable(error, attempt) {
    if (error instanceof NetworkError) return true;
    if (RETRY_STATUSES.has(error.status)) return true;
    // Our own earlier attempt (e.g. one that timed out) may still be running on the server.
    return attempt > 0 && error.status === 409 && /in progress/i.test(error.message);
  }

  async call(method, path, options) {
    return (await this.request(method, path, options)).data;
  }

  // -- agents ----------------------------------------------------------------

  /**
   * Spawn one agent: {model, task, priority, timeout, privacy}. Returns an Agent
   * (status 'spawning'); follow it with agent.waitForCompletion().
   */
  async spawn(request, options = {}) {
    const data = await this.call('POST', '/spawn', { ...options, body: compact(request) });
    return new Agent(this, data);
  }

  /** Spawn a team ({team, task, priority, timeout, privacy}); one Agent running its steps. */
  async spawnTeam(request, options = {}) {
    const data = await this.call('POST', '/spawn-team', { ...options, body: compact(request) });
    return new Agent(this, data);
  }

  /** Spawn 1..50 agents at once, all or nothing: an array of spawn requests -> Agents. */
  async spawnBatch(requests, options = {}) {
    const agents = Array.isArray(requests) ? requests : requests.agents;
    const data = await this.call('POST', '/spawn-batch',
      { ...options, body: { agents: agents.map(compact) } });
    return data.agents.map((item) => new Agent(this, item));
  }

  /** The agent with this id (NotFound if there is none). */
  async getAgent(agentId, options) {
    const agent = new Agent(this, { agent_id: agentId });
    return agent.refresh(options);
  }

  /** Cancel a waiting or running agent; Conflict once it has finished. */
  async cancel(agentId, options = {}) {
    const id = agentId instanceof Agent ? agentId.id : agentId;
    return this.call('DELETE', `/agent/${encodeURIComponent(id)}`, options);
  }

  /**
   * One page of GET /agents: {data, pagination, links, meta} plus `agents` (Agent
   * objects) and `nextCursor`. params: status, model, team, created_after,
   * created_before, cost_gt, cost_lt, filter (object), sort, limit, offset, cursor.
   */
  async agentsPage(params = {}, options = {}) {
    const body = await this.call('GET', '/agents', { ...options, query: params });
    const pagination = body.pagination || {};
    return {
      ...body,
      agents: (body.data || []).map((item) => new Agent(this, item)),
      nextCursor: pagination.has_more ? (pagination.cursor ?? pagination.next_cursor ?? null) : null,
    };
  }

  /**
   * Every agent matching `params`, page after page by cursor:
   *   for await (const agent of agency.listAgents({ status: 'completed' })) { ... }
   * `limit` is the page size (default 100).
   */
  async* listAgents(params = {}, options = {}) {
    const { offset, ...rest } = params;
    if (offset !== undefined) throw new TypeError('listAgents pages by cursor; use agentsPage for offsets');
    let query = { limit: 100, ...rest };
    for (;;) {
      const page = await this.agentsPage(query, options);
      yield* page.agents;
      if (!page.nextCursor) return;
      query = { ...query, cursor: page.nextCursor };
    }
  }

  /** Agents waiting or running now: {agents, count, total_cost_today}. */
  async activeAgents(options) {
    return this.call('GET', '/agents/active', options);
  }

  // -- service state ----------------------------------------------------------

  async health(options) {
    return this.call('GET', '/health', options);
  }

  async rateLimits(options) {
    return this.call('GET', '/rate-limits', options);
  }

  async orchestratorStatus(options) {
    return this.call('GET', '/orchestrator/status', options);
  }

  /**
   * The model to use: {task_type, complexity, priority, estimated_tokens}
   * (camelCase taskType/estimatedTokens are accepted too).
   */
  async recommendModel(request = {}, options = {}) {
    const { taskType, estimatedTokens, ...rest } = request;
    const body = compact({ task_type: taskType, estimated_tokens: estimatedTokens, ...rest });
    return this.call('POST', '/orchestrator/recommend-model', { ...options, body });
  }

  /** Cost over {start, end} (dates); `format: 'csv'` returns the CSV text. */
  async billingUsage(params = {}, options = {}) {
    return this.call('GET', '/billing/usage', { ...options, query: params });
  }

  // -- events -----------------------------------------------------------------

  /** One page of GET /events: {data, pagination: {cursor, has_more}, links}. */
  async eventsPage(params = {}, options = {}) {
    return this.call('GET', '/events', { ...options, query: params });
  }

  /**
   * Events oldest first, by cursor: {type, limit, cursor}. Stops at the newest
   * event unless `follow: true`, which keeps polling every `pollIntervalMs`
   * (end it with `break` or an AbortSignal in `signal`).
   */
  async* events({ follow = false, pollIntervalMs = 2000, signal, ...params } = {}, options = {}) {
    let query = { limit: 100, ...params };
    for (;;) {
      if (signal && signal.aborted) return;
      const page = await this.eventsPage(query, options);
      yield* page.data || [];
      const pagination = page.pagination || {};
      if (pagination.cursor) query = { ...query, cursor: pagination.cursor };
      if (pagination.has_more) continue;
      if (!follow) return;
      await sleep(pollIntervalMs);
    }
  }

  /**
   * Events as they happen (GET /events/stream, Server-Sent Events), as an async
   * iterator: `{types, lastEventId, signal}`; see LiveEvents.
   */
  streamEvents({ types = [], lastEventId = null, signal, deadline } = {}) {
    return new LiveEvents(this, { types, lastEventId, signal, deadline });
  }
}

/**
 * A live event stream. When the server ends it (it does after its streams.max_seconds)
 * or the connection drops, it reconnects after the server's `retry:` delay and resumes
 * with Last-Event-ID, so no event is skipped or repeated; `agency.maxRetries` failed
 * connections in a row throw NetworkError. `lastEventId` is the position (the feed's
 * cursor); without one the stream starts when it connects: at `connect()` or the first
 * iteration. A 503 (too many streams open) with a known position polls the feed until
 * Retry-After has passed; on the first connection it is thrown. Iteration ends when
 * `signal` aborts, at `deadline` (ms since the epoch), or with `break`.
 */
class LiveEvents {
  constructor(agency, { types = [], lastEventId = null, signal, deadline } = {}) {
    Object.defineProperty(this, 'agency', { value: agency, enumerable: false });
    this.types = [...types];
    this.lastEventId = lastEventId;
    this.retryMs = 2000;
    this.signal = signal;
    this.deadline = deadline ?? Infinity;
    this.response = null;
    this.blocks = null;
    this.controller = null;
  }

  get ended() {
    return Date.now() >= this.deadline || Boolean(this.signal && this.signal.aborted);
  }

  /** Open the stream now, unless it is open. */
  async connect() {
    if (this.response) return this;
    const agency = this.agency;
    const qs = queryString({ type: this.types.join(',') });
    const url = new URL(`${agency.apiRoot}/events/stream${qs ? `?${qs}` : ''}`);
    const extra = { Accept: 'text/event-stream' };
    if (this.lastEventId) extra['Last-Event-ID'] = this.lastEventId;
    const controller = new AbortController();
    const stop = () => controller.abort();
    if (this.signal) this.signal.addEventListener('abort', stop, { once: true });
    if (this.deadline !== Infinity) {
      controller.deadlineTimer = setTimeout(stop, Math.max(0, this.deadline - Date.now()));
    }
    this.controller = controller;
    let response;
    try {
      response = await agency.fetchImpl(url, {
        headers: agency.headersFor('GET', decodeURIComponent(url.pathname) + url.search, '', extra),
        signal: controller.signal,
        redirect: 'manual',
      });
    } catch (cause) {
      this.close();
      throw new NetworkError(`GET ${url.pathname} failed: ${(cause && cause.message) || cause}`,
        { method: 'GET', url: url.toString(), cause });
    }
    if (!response.ok) {
      const text = await response.text().finally(() => this.close());
      let body = text;
      try {
        body = JSON.parse(text);
      } catch {
        // not JSON: keep the text
      }
      throw errorFromResponse(response.status, response.headers, body, 'GET', url.toString());
    }
    if (!(response.headers.get('content-type') || '').startsWith('text/event-stream')) {
      await response.body?.cancel();
      this.close();
      throw new J1mskyError('GET /events/stream did not answer with an event stream',
        { status: response.status, method: 'GET', url: url.toString() });
    }
    this.response = response;
    this.blocks = this.readBlocks(response);
    await this.blocks.next(); // the opening block: retry: and the start position
    return this;
  }

  /** Drop the connection (iteration may go on: it reconnects). */
  close() {
    if (this.controller) {
      clearTimeout(this.controller.deadlineTimer);
      this.controller.abort();
    }
    this.controller = null;
    this.response = null;
  }

  async* [Symbol.asyncIterator]() {
    let failures = 0;
    try {
      while (!this.ended) {
        let waitMs = this.retryMs;
        try {
          await this.connect();
          failures = 0;
          yield* this.messages();
          waitMs = this.retryMs;
        } catch (error) {
          if (this.ended) return;
          if (error instanceof ServerError && error.status === 503 && this.lastEventId) {
            yield* this.poll((error.retryAfter ?? this.retryMs / 1000) * 1000);
            waitMs = 0;
          } else if (error instanceof NetworkError || !(error instanceof J1mskyError)) {
            failures += 1;
            if (failures > this.agency.maxRetries) throw error;
            waitMs = Math.min(this.retryMs * 2 ** (failures - 1), this.agency.backoffMaxMs);
          } else {
            throw error;
          }
        } finally {
          this.close();
        }
        await sleep(Math.max(0, Math.min(waitMs, this.deadline - Date.now())));
      }
    } finally {
      this.close();
    }
  }

  /**
   * The SSE blocks of a response as {field: value} ({} for a ping); their `retry:`
   * and `id:` take effect as each block ends.
   */
  async* readBlocks(response) {
    const decoder = new TextDecoder();
    let buffer = '';
    let fields = {};
    for await (const chunk of response.body) {
      buffer += decoder.decode(chunk, { stream: true });
      const lines = buffer.split(/\r?\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line) {
          const colon = line.indexOf(':');
          const name = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (name === 'retry' && /^\d+$/.test(value)) this.retryMs = Number(value);
          else if (name === 'id' || name === 'event') fields[name] = value;
          else if (name === 'data') fields.data = 'data' in fields ? `${fields.data}\n${value}` : value;
          continue;
        }
        if ('id' in fields) this.lastEventId = fields.id;
        yield fields;
        fields = {};
      }
    }
  }

  /** The events of the open connection, until the server ends it. */
  async* messages() {
    for await (const fields of this.blocks) {
      if ('data' in fields) yield JSON.parse(fields.data);
    }
  }

  /** The feed from the position for `ms` (the stream refused us); by page, as events(). */
  async* poll(ms) {
    const until = Date.now() + ms;
    for (;;) {
      const page = await this.agency.eventsPage({ cursor: this.lastEventId, limit: 100 });
      for (const event of page.data || []) {
        if (!this.types.length || this.types.includes(event.type)) yield event;
      }
      const pagination = page.pagination || {};
      if (pagination.cursor) this.lastEventId = pagination.cursor;
      if (pagination.has_more) continue;
      const pause = Math.min(until, this.deadline) - Date.now();
      if (pause <= 0 || this.ended) return;
      await sleep(Math.min(1000, pause));
    }
  }
}

/** agency.webhooks: register and inspect webhooks (admin:write). */
class Webhooks {
  constructor(agency) {
    Object.defineProperty(this, 'agency', { value: agency, enumerable: false });
  }

  /** {url, events, secret?} -> the webhook; `secret` is in the answer once if generated. */
  async create(request, options = {}) {
    return this.agency.call('POST', '/webhooks', { ...options, body: compact(request) });
  }

  /** Every webhook (secrets never shown). */
  async list(options) {
    return (await this.agency.call('GET', '/webhooks', options)).data;
  }

  async get(webhookId, options) {
    return this.agency.call('GET', `/webhooks/${encodeURIComponent(webhookId)}`, options);
  }

  async delete(webhookId, options = {}) {
    return this.agency.call('DELETE', `/webhooks/${encodeURIComponent(webhookId)}`, options);
  }

  /** The latest deliveries and their attempts ({limit} 1..100). */
  async deliveries(webhookId, params = {}, options = {}) {
    return (await this.agency.call('GET', `/webhooks/${encodeURIComponent(webhookId)}/deliveries`,
      { ...options, query: params })).data;
  }

  /** Queue a signed `webhook.test` delivery. */
  async test(webhookId, options = {}) {
    return this.agency.call('POST', `/webhooks/${encodeURIComponent(webhookId)}/test`, options);
  }
}

/** agency.keys: API key management (admin:write). */
class Keys {
  constructor(agency) {
    Object.defineProperty(this, 'agency', { value: agency, enumerable: false });
  }

  /**
   * {name, scopes, signing, requireSignature, maxConcurrentAgents} (snake_case works
   * too) -> {key_id, key, api_secret, ...}: the key and secret are shown only here.
   */
  async create(request, options = {}) {
    const { requireSignature, maxConcurrentAgents, ...rest } = request;
    const body = compact({
      require_signature: requireSignature, max_concurrent_agents: maxConcurrentAgents, ...rest,
    });
    return this.agency.call('POST', '/keys', { ...options, body });
  }

  /** Every key, without secrets. */
  async list(options) {
    return (await this.agency.call('GET', '/keys', options)).data;
  }

  /** A new key with the same scopes; the old one keeps working for the grace period. */
  async rotate(keyId, options = {}) {
    return this.agency.call('POST', `/keys/${encodeURIComponent(keyId)}/rotate`, options);
  }

  /** Revoke at once: {reason, notifyUser}. */
  async revoke(keyId, { reason, notifyUser, notify_user: notifySnake } = {}, options = {}) {
    const body = compact({ reason, notify_user: notifyUser ?? notifySnake });
    return this.agency.call('DELETE', `/keys/${encodeURIComponent(keyId)}`, { ...options, body });
  }
}

module.exports = {
  VERSION,
  FINISHED,
  Agency,
  Agent,
  LiveEvents,
  Result,
  Webhooks,
  Keys,
  J1mskyError,
  ValidationError,
  AuthError,
  NotFound,
  Conflict,
  RateLimitError,
  ServerError,
  NetworkError,
  WaitTimeoutError,
  signRequest,
};
