// ESM entry point: import { Agency } from 'j1msky-sdk'. The same objects as require().
import pkg from './index.cjs';

export const {
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
} = pkg;

export default pkg;
