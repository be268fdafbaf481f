// A parked-at stack (deep mode), as the agent trimmed it: the library call
// the app made, then the app's own frames, which are what to read.

import { h } from '../dom.js';
import { shortPath } from '../format.js';

/** The stack `id` of `snapshot`, or null. */
export function stackOf(snapshot, id) {
  return id == null ? null : (snapshot.stacks ?? []).find((s) => s.id === id) ?? null;
}

export function renderStack(stack) {
  const frames = stack.frames.map((f) =>
    h(
      'li',
      { class: f.user ? 'frame user' : 'frame' },
      h('span', { class: 'fn' }, f.function),
      f.file ? h('span', { class: 'loc' }, ` at ${shortPath(f.file)}${f.line != null ? `:${f.line}` : ''}`) : null,
      f.user ? h('span', { class: 'sr-only' }, ' (application code)') : null,
    ),
  );
  return h(
    'div',
    { class: 'stack' },
    h('ol', { class: 'frames' }, frames),
    stack.folded ? h('p', { class: 'muted small' }, `${stack.folded} frames of the runtime and libraries folded`) : null,
  );
}
