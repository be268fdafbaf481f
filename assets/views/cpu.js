// CPU: a profile of the next N seconds as an interactive flamegraph
// (`/debug/pprof/flamegraph`). The page stays live meanwhile: the agent
// profiles on its own thread.

import { fill, h, note } from '../dom.js';
import { loadProfile } from './embed.js';

export const title = 'CPU';

export function query() {
  return { limit: 0 };
}

function start(parts, ctx, seconds) {
  parts.button.disabled = true;
  loadProfile(parts.flame, ctx.source, '../pprof/flamegraph', { seconds }, { seconds, label: 'CPU flamegraph' })
    .catch((e) => ctx.onError?.(e))
    .finally(() => {
      parts.button.disabled = false;
    });
}

export function render(el, data, ctx) {
  if (ctx.offline || !data.agent?.features?.cpu) {
    el.parts = null;
    fill(
      el,
      ctx.offline
        ? note('info', 'This is a saved snapshot: CPU profiles need the live agent (GET /debug/pprof/flamegraph?seconds=N on the app).')
        : note('warn', 'CPU profiling is not supported on this platform (it needs Linux or macOS and SIGPROF).'),
    );
    return;
  }
  if (!el.parts) {
    const seconds = h('input', { type: 'number', min: 1, max: 300, value: ctx.params.get('seconds') ?? 5, name: 'seconds', size: 4 });
    const button = h('button', { type: 'submit', class: 'primary' }, 'Profile');
    const flame = h('div', { class: 'flame-box', id: 'cpu-flame' });
    const label = () => {
      button.textContent = `Profile for ${seconds.value} s`;
    };
    seconds.addEventListener('input', label);
    label();
    const parts = { button, flame };
    const form = h(
      'form',
      { class: 'filters', onsubmit: (e) => (e.preventDefault(), start(parts, ctx, Number(seconds.value) || 5)) },
      h('label', {}, 'Seconds ', seconds),
      button,
      h('span', { class: 'muted small' }, ' samples every thread at the agent\'s rate (TASKSCOPE_CPU_HZ); roots are threads, then the spawn site of the task being polled'),
    );
    fill(el, form, flame);
    el.parts = parts;
  }
  // `#/cpu?start=1` (from the Workers tab) profiles at once, once.
  if (ctx.params.get('start') === '1' && !el.parts.button.disabled) {
    history.replaceState(null, '', location.hash.replace(/[?&]start=1/, ''));
    start(el.parts, ctx, Number(ctx.params.get('seconds')) || 5);
  }
}
