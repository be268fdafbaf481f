// A profile SVG (inferno flamegraph) embedded as an <object>, so that its
// own script (zoom, search) keeps working. It is fetched with the token and
// shown from a blob: URL, since an <object> cannot send headers.

import { fill, h, note } from '../dom.js';

/**
 * Fetches `path?params` into `box`, with a progress bar that fills over
 * `seconds` (a CPU profile takes that long; 0 for a spinner-less wait).
 */
export async function loadProfile(box, source, path, params, { seconds = 0, label }) {
  if (box.dataset.url) URL.revokeObjectURL(box.dataset.url);
  delete box.dataset.url;
  const progress = h('progress', { max: Math.max(seconds, 1) * 10, value: 0, 'aria-label': `${label} progress` });
  const status = h('span', { role: 'status' }, seconds ? `profiling… ${seconds} s left` : 'loading…');
  fill(box, h('div', { class: 'progress' }, progress, ' ', status));
  box.dataset.state = 'loading';
  const started = Date.now();
  const tick = setInterval(() => {
    const elapsed = (Date.now() - started) / 1000;
    progress.value = Math.min(elapsed, Math.max(seconds, 1)) * 10;
    const left = Math.ceil(seconds - elapsed);
    status.textContent = left > 0 ? `profiling… ${left} s left` : 'drawing the flamegraph…';
  }, 100);
  try {
    const url = await source.profile(path, params);
    box.dataset.url = url;
    const object = h('object', { type: 'image/svg+xml', data: url, class: 'flamegraph', 'aria-label': label }, `${label} (your browser cannot show SVG objects)`);
    fill(
      box,
      h('p', { class: 'small' }, h('a', { href: url, download: `${label.replaceAll(' ', '-')}.svg` }, 'download SVG'), ' · ', h('a', { href: url, target: '_blank', rel: 'noopener' }, 'open in a new tab'), ' · click a frame to zoom, Ctrl+F to search'),
      object,
    );
    box.dataset.state = 'loaded';
  } catch (e) {
    fill(box, note('error', `${label}: ${e.message}`));
    box.dataset.state = 'error';
    throw e;
  } finally {
    clearInterval(tick);
  }
}
