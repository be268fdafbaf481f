// Where the viewer's data comes from: a live agent's JSON API, or a saved
// snapshot (read-only).
//
// Offline mode: `index.html?snapshot=<url>` fetches that URL once instead of
// the API and applies the task selection itself (query.js); the "Open
// snapshot" button does the same with a local file. A saved snapshot is what
// "Download snapshot" saves: the API's JSON.
//
// Authentication: when the agent runs with TASKSCOPE_TOKEN, its data answer
// 401 without `Authorization: Bearer`. The page then asks for the token once
// and keeps it in sessionStorage (this tab only, gone when it closes). The
// page itself and its modules are served without the token: they hold no
// data. Profiles are fetched with the header too and shown from blob: URLs,
// since an <object> cannot send headers.

import { applyQuery, toParams } from './query.js';

const TOKEN_KEY = 'taskscope.token';

/** The agent wants a (different) bearer token. */
export class Unauthorized extends Error {}

/** Any other refusal: the agent's one-line reason. */
export class RequestError extends Error {
  constructor(status, reason) {
    super(`${status}: ${reason}`);
    this.status = status;
  }
}

export function token() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** GET `url` with the token, if any; throws on anything but 2xx. */
export async function request(url, { signal } = {}) {
  const headers = {};
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  const res = await fetch(url, { headers, signal, cache: 'no-store' });
  if (res.status === 401) throw new Unauthorized((await res.text()).trim());
  if (!res.ok) throw new RequestError(res.status, (await res.text()).trim() || res.statusText);
  return res;
}

/** A live agent, at `base` (the viewer's own URL, `/debug/taskscope/`). */
export class LiveSource {
  constructor(base) {
    this.base = base;
    this.offline = false;
    this.name = new URL(base).host;
  }

  async snapshot(query, signal) {
    const url = new URL('api/snapshot', this.base);
    url.search = toParams(query).toString();
    return (await request(url, { signal })).json();
  }

  /** A profile (an SVG) as a blob: URL, for an <object>. */
  async profile(path, params, signal) {
    const url = new URL(path, this.base);
    url.search = new URLSearchParams(params).toString();
    const blob = await (await request(url, { signal })).blob();
    return URL.createObjectURL(new Blob([blob], { type: 'image/svg+xml' }));
  }

  /** What "Download snapshot" saves: the longest idle tasks first, up to `limit`. */
  async download(limit) {
    return (await request(new URL(`api/snapshot?sort=idle&limit=${limit}`, this.base))).blob();
  }
}

/** Throws unless `data` looks like the snapshot API's JSON. */
export function checkSnapshot(data) {
  const ok = data && typeof data === 'object' && Array.isArray(data.tasks) && Array.isArray(data.sites) && Array.isArray(data.findings);
  if (!ok) throw new Error('not a taskscope snapshot: want the JSON of /debug/taskscope/api/snapshot');
  return data;
}

/** A saved snapshot, read-only. */
export class SavedSource {
  constructor(name, data) {
    this.name = name;
    this.data = checkSnapshot(data);
    this.offline = true;
    // Tasks live when it was saved, against those the file holds.
    this.savedTotal = data.task_counts?.total ?? data.tasks_total ?? data.tasks.length;
  }

  static async fetch(url) {
    return new SavedSource(url, await (await request(url)).json());
  }

  async snapshot(query) {
    return applyQuery(this.data, query);
  }

  async download() {
    return new Blob([JSON.stringify(this.data)], { type: 'application/json' });
  }
}
