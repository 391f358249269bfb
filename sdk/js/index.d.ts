// Type declarations for j1msky-sdk (the same surface for require() and import).

export declare const VERSION: string;
export declare const FINISHED: readonly ['completed', 'failed', 'cancelled'];

export type AgentStatus = 'spawning' | 'running' | 'completed' | 'failed' | 'cancelled';
export type Priority = 'low' | 'normal' | 'high';

export interface AgencyOptions {
  apiKey?: string;
  baseUrl?: string;
  apiSecret?: string;
  timeoutMs?: number;
  maxRetries?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  fetch?: typeof fetch;
  headers?: Record<string, string>;
}

export interface RequestOptions {
  query?: Record<string, unknown>;
  body?: unknown;
  /** Defaults to a random UUID on writes; null sends none. */
  idempotencyKey?: string | null;
  headers?: Record<string, string>;
  timeoutMs?: number;
  maxRetries?: number;
}

export interface ApiResponse<T = any> {
  status: number;
  headers: Headers;
  data: T;
  requestId: string | null;
  idempotencyKey: string | null;
  replayed: boolean;
}

export interface PrivacyOptions {
  detect_pii?: boolean;
  mask_pii_in_logs?: boolean;
  encrypt_output?: boolean;
  retention_days?: number | null;
}

export interface SpawnRequest {
  model?: 'k2p5' | 'sonnet' | 'opus' | string;
  task: string;
  priority?: Priority;
  timeout?: number;
  privacy?: PrivacyOptions;
}

export interface TeamRequest {
  team: string;
  task: string;
  priority?: Priority;
  timeout?: number;
  privacy?: PrivacyOptions;
}

export interface AgentData {
  agent_id: string;
  status: AgentStatus;
  model?: string;
  team?: string | null;
  task?: string | null;
  result?: string | null;
  error?: string | null;
  cost?: number;
  actual_cost?: number;
  estimated_cost?: number;
  usage?: { input_tokens: number | null; output_tokens: number | null };
  steps?: Array<Record<string, any>> | null;
  [field: string]: any;
}

export interface ListAgentsParams {
  status?: AgentStatus;
  model?: string;
  team?: string;
  created_after?: string | Date;
  created_before?: string | Date;
  cost_gt?: number;
  cost_lt?: number;
  filter?: Record<string, unknown>;
  sort?: string;
  limit?: number;
  offset?: number;
  cursor?: string;
}

export declare class Result {
  readonly agent: Agent;
  agentId: string;
  status: AgentStatus;
  output: string | null;
  cost: number | null;
  usage: { input_tokens: number | null; output_tokens: number | null } | null;
  error: string | null;
  model: string | null;
  steps: Array<Record<string, any>> | null;
  simulated: boolean;
  readonly ok: boolean;
}

export declare class Agent {
  readonly agency: Agency;
  id: string;
  data: AgentData;
  readonly status: AgentStatus;
  readonly finished: boolean;
  refresh(options?: RequestOptions): Promise<this>;
  cancel(options?: RequestOptions): Promise<{ success: true; refund: number; [k: string]: any }>;
  waitForCompletion(options?: { timeoutMs?: number; pollIntervalMs?: number }): Promise<Result>;
  toJSON(): AgentData;
}

export declare class Webhooks {
  create(request: { url: string; events: string[]; secret?: string }, options?: RequestOptions): Promise<any>;
  list(options?: RequestOptions): Promise<any[]>;
  get(webhookId: string, options?: RequestOptions): Promise<any>;
  delete(webhookId: string, options?: RequestOptions): Promise<any>;
  deliveries(webhookId: string, params?: { limit?: number }, options?: RequestOptions): Promise<any[]>;
  test(webhookId: string, options?: RequestOptions): Promise<any>;
}

export declare class Keys {
  create(request: {
    name: string; scopes: string[]; signing?: boolean; requireSignature?: boolean;
    maxConcurrentAgents?: number;
  }, options?: RequestOptions): Promise<{ key_id: string; key: string; api_secret: string | null; [k: string]: any }>;
  list(options?: RequestOptions): Promise<any[]>;
  rotate(keyId: string, options?: RequestOptions): Promise<any>;
  revoke(keyId: string, request?: { reason?: string; notifyUser?: boolean }, options?: RequestOptions): Promise<any>;
}

export declare class Agency {
  constructor(options: AgencyOptions);
  baseUrl: string;
  apiRoot: string;
  timeoutMs: number;
  maxRetries: number;
  backoffBaseMs: number;
  backoffMaxMs: number;
  webhooks: Webhooks;
  keys: Keys;
  request<T = any>(method: string, path: string, options?: RequestOptions): Promise<ApiResponse<T>>;
  spawn(request: SpawnRequest, options?: RequestOptions): Promise<Agent>;
  spawnTeam(request: TeamRequest, options?: RequestOptions): Promise<Agent>;
  spawnBatch(requests: SpawnRequest[] | { agents: SpawnRequest[] }, options?: RequestOptions): Promise<Agent[]>;
  getAgent(agentId: string, options?: RequestOptions): Promise<Agent>;
  cancel(agentId: string | Agent, options?: RequestOptions): Promise<any>;
  agentsPage(params?: ListAgentsParams, options?: RequestOptions): Promise<{
    data: AgentData[]; agents: Agent[]; pagination: Record<string, any>; links: Record<string, any>;
    meta: Record<string, any>; nextCursor: string | null;
  }>;
  listAgents(params?: Omit<ListAgentsParams, 'offset'>, options?: RequestOptions): AsyncGenerator<Agent, void>;
  activeAgents(options?: RequestOptions): Promise<any>;
  health(options?: RequestOptions): Promise<any>;
  rateLimits(options?: RequestOptions): Promise<any>;
  orchestratorStatus(options?: RequestOptions): Promise<any>;
  recommendModel(request: Record<string, unknown>, options?: RequestOptions): Promise<any>;
  billingUsage(params?: { start?: string; end?: string; format?: 'json' | 'csv' }, options?: RequestOptions): Promise<any>;
  eventsPage(params?: { type?: string; limit?: number; cursor?: string }, options?: RequestOptions): Promise<any>;
  events(params?: { type?: string; limit?: number; cursor?: string; follow?: boolean; pollIntervalMs?: number; signal?: AbortSignal }, options?: RequestOptions): AsyncGenerator<any, void>;
  streamEvents(params?: { types?: string[]; lastEventId?: string | null; signal?: AbortSignal; deadline?: number }): LiveEvents;
}

export declare class LiveEvents implements AsyncIterable<any> {
  types: string[];
  /** The position: the last event's id (the feed's cursor); resume from it. */
  lastEventId: string | null;
  retryMs: number;
  connect(): Promise<this>;
  close(): void;
  [Symbol.asyncIterator](): AsyncGenerator<any, void>;
}

export declare class J1mskyError extends Error {
  status: number | null;
  code: number | null;
  requestId: string | null;
  details: Record<string, any> | null;
  retryAfter: number | null;
  body: any;
  headers: Headers | null;
  method: string | null;
  url: string | null;
}
export declare class ValidationError extends J1mskyError {}
export declare class AuthError extends J1mskyError {}
export declare class NotFound extends J1mskyError {}
export declare class Conflict extends J1mskyError {}
export declare class RateLimitError extends J1mskyError {}
export declare class ServerError extends J1mskyError {}
export declare class NetworkError extends J1mskyError {}
export declare class WaitTimeoutError extends J1mskyError {}

export declare function signRequest(apiSecret: string, method: string, path: string, body?: string,
  timestamp?: string): { 'X-Timestamp': string; 'X-Signature': string };

declare const pkg: {
  VERSION: typeof VERSION; FINISHED: typeof FINISHED; Agency: typeof Agency; Agent: typeof Agent;
  LiveEvents: typeof LiveEvents;
  Result: typeof Result; Webhooks: typeof Webhooks; Keys: typeof Keys;
  J1mskyError: typeof J1mskyError; ValidationError: typeof ValidationError;
  AuthError: typeof AuthError; NotFound: typeof NotFound; Conflict: typeof Conflict;
  RateLimitError: typeof RateLimitError; ServerError: typeof ServerError;
  NetworkError: typeof NetworkError; WaitTimeoutError: typeof WaitTimeoutError;
  signRequest: typeof signRequest;
};
export default pkg;
