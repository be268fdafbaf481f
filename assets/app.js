// The viewer: one view at a time over a snapshot of the app, refreshed every
// few seconds from the agent, or read once from a saved snapshot (see
// source.js for how offline mode is selected). The hash holds the view and
// its parameters (`#/tasks?sort=idle&task=42`), so that links between views,
// the back button and shared URLs work.

import { note, fill } from './dom.js';
import { clock, duration } from './format.js';
import { LiveSource, SavedSource, Unauthorized, setToken, token } from './source.js';
import * as cpu from './views/cpu.js';
import * as heap from './views/heap.js';
import * as overview from './views/overview.js';
import * as sites from './views/sites.js';
import * as tasks from './views/tasks.js';
import * as workers from './views/workers.js';

const VIEWS = { overview, tasks, sites, workers, heap, cpu };
/** Tasks a downloaded snapshot keeps at most, the longest idle first. */
const DOWNLOAD_LIMIT = 100_000;
/** Observations kept per task for its state history. */
const OBSERVATIONS = 120;

const $ = (id) => document.getElementById(id);

const state = {
  source: null,
  live: null,
  data: null,
  fetchedAt: 0,
  previous: null,
  previousAt: 0,
  timer: 0,
  took: 0,
  generation: 0,
  history: new Map(),
  shown: new Set(),
};

function route() {
  const [path, qs] = location.hash.replace(/^#\/?/, '').split('?');
  return { tab: VIEWS[path] ? path : 'overview', params: new URLSearchParams(qs ?? '') };
}

function navigate(hash) {
  if (location.hash === hash) refresh();
  else location.hash = hash;
}

function paused() {
  return state.source?.offline || $('pause').getAttribute('aria-pressed') === 'true';
}

/**
 * The next refresh: after the chosen interval, or later when snapshots are
 * slow (a million tasks), so that the page never keeps the agent busy for
 * more than a fifth of the time.
 */
function delay() {
  return Math.max(Number($('interval').value), 5 * state.took);
}

function schedule() {
  clearTimeout(state.timer);
  if (paused()) return;
  state.timer = setTimeout(() => (document.hidden ? schedule() : refresh()), delay());
}

/** Remembers what each refresh saw of the selected task. */
function observe(params, tasksSeen, at) {
  const id = Number(params.get('task'));
  const t = tasksSeen.find((x) => x.id === id);
  if (!t) return;
  const seen = state.history.get(id) ?? [];
  seen.push({ at, state: t.state, polls: t.polls });
  if (seen.length > OBSERVATIONS) seen.shift();
  state.history.set(id, seen);
  if (state.history.size > 50) state.history.delete(state.history.keys().next().value);
}

function banners(data) {
  const source = state.source;
  const agent = data.agent ?? {};
  const out = [];
  if (source.offline) {
    const held = data.task_counts?.total != null && source.data.tasks.length < source.savedTotal;
    out.push(
      note(
        'info',
        `Saved snapshot ${source.name} (read-only). `,
        held ? `It holds ${source.data.tasks.length.toLocaleString('en-US')} of the ${source.savedTotal.toLocaleString('en-US')} tasks live when it was saved, the longest idle first. ` : '',
        state.live ? Object.assign(document.createElement('a'), { href: location.pathname, textContent: 'back to the live agent' }) : '',
      ),
    );
  }
  if (agent.problem) out.push(note('warn', agent.problem));
  if (agent.deep_problem) out.push(note('warn', agent.deep_problem));
  fill($('banners'), out);
}

function show(tab, params, data, detail) {
  for (const [name, view] of Object.entries(VIEWS)) {
    const active = name === tab;
    $(`tab-${name}`).setAttribute('aria-selected', String(active));
    $(`view-${name}`).hidden = !active;
    if (active) document.title = `${view.title} · taskscope`;
  }
  banners(data);
  const firstRender = !state.shown.has(`${tab}?${params}`);
  state.shown.add(`${tab}?${params}`);
  VIEWS[tab].render($(`view-${tab}`), data, {
    params,
    navigate,
    source: state.source,
    offline: state.source.offline,
    detail,
    history: state.history,
    fetchedAt: state.fetchedAt,
    previous: state.previous,
    sincePrevious: state.fetchedAt - state.previousAt,
    firstRender,
    onError: showError,
  });
}

function showError(e) {
  fill($('error'), e ? note('error', e.message) : null);
}

function status(data) {
  const agent = data.agent ?? {};
  const when = state.source.offline
    ? `saved snapshot · ${state.source.name}`
    : `${paused() ? 'paused' : `live every ${Math.round(delay() / 100) / 10} s`} · updated ${clock(state.fetchedAt)} · snapshot took ${duration(agent.snapshot_ms)}`;
  $('status').textContent = when;
}

async function refresh() {
  clearTimeout(state.timer);
  const generation = ++state.generation;
  const { tab, params } = route();
  const view = VIEWS[tab];
  const started = Date.now();
  try {
    const detailQuery = view.detailQuery?.(params);
    const [data, detail] = await Promise.all([
      state.source.snapshot(view.query(params)),
      detailQuery ? state.source.snapshot(detailQuery) : null,
    ]);
    // A newer refresh (the user clicked on) wins over a slower older one.
    if (generation !== state.generation) return;
    if (state.data) {
      state.previous = state.data;
      state.previousAt = state.fetchedAt;
    }
    state.data = data;
    state.fetchedAt = Date.now();
    state.took = state.fetchedAt - started;
    observe(params, [...data.tasks, ...(detail?.tasks ?? [])], state.fetchedAt);
    showError(null);
    show(tab, params, data, detail);
    status(data);
  } catch (e) {
    if (generation !== state.generation) return;
    if (e instanceof Unauthorized) {
      askToken(e.message);
      return;
    }
    showError(e);
    console.error(e);
  }
  schedule();
}

function askToken(reason) {
  const form = $('token-form');
  $('token-reason').textContent = token() ? 'The agent refused this token. ' : reason ? `${reason}. ` : '';
  form.hidden = false;
  $('token').focus();
}

function download() {
  const source = state.source;
  const at = new Date().toISOString().replaceAll(':', '-').slice(0, 19);
  source
    .download(DOWNLOAD_LIMIT)
    .then((blob) => {
      const a = document.createElement('a');
      a.href = URL.createObjectURL(blob);
      a.download = `taskscope-snapshot-${at}.json`;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
    })
    .catch((e) => (e instanceof Unauthorized ? askToken(e.message) : showError(e)));
}

function useSource(source) {
  state.source = source;
  state.data = state.previous = null;
  for (const name of Object.keys(VIEWS)) $(`view-${name}`).parts = null;
  document.body.classList.toggle('offline', source.offline);
  refresh();
}

async function openFile(file) {
  try {
    useSource(new SavedSource(file.name, JSON.parse(await file.text())));
  } catch (e) {
    showError(e);
  }
}

async function start() {
  $('pause').addEventListener('click', (e) => {
    const pressed = e.currentTarget.getAttribute('aria-pressed') !== 'true';
    e.currentTarget.setAttribute('aria-pressed', String(pressed));
    e.currentTarget.textContent = pressed ? 'Resume' : 'Pause';
    refresh();
  });
  $('interval').addEventListener('change', refresh);
  $('download').addEventListener('click', download);
  $('open').addEventListener('change', (e) => e.target.files[0] && openFile(e.target.files[0]));
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    setToken($('token').value.trim());
    $('token-form').hidden = true;
    if (state.source) refresh();
    else load();
  });
  window.addEventListener('hashchange', refresh);
  document.addEventListener('visibilitychange', () => !document.hidden && !paused() && refresh());
  load();
}

/** Picks the source: the live agent, or `?snapshot=<url>`. */
async function load() {
  const saved = new URLSearchParams(location.search).get('snapshot');
  if (!saved) {
    state.live = new LiveSource(new URL('.', location.href).href);
    useSource(state.live);
    return;
  }
  try {
    useSource(await SavedSource.fetch(new URL(saved, location.href)));
  } catch (e) {
    if (e instanceof Unauthorized) askToken(e.message);
    else showError(new Error(`could not load the snapshot ${saved}: ${e.message}`));
  }
}

start();
