// Building the page: elements from data, always as text (names like
// `Receiver<T>::recv` must never be parsed as HTML).

/** `h('td', {class: 'num'}, '42')`: an element with attributes, listeners and children. */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A finding badge: text first, the colour only repeats it. */
export function badge(b) {
  return h('span', { class: `badge sev-${b.severity}`, title: b.title }, b.label);
}

/** A severity badge: `critical`, `warning`, `info`. */
export function severityBadge(severity) {
  return h('span', { class: `badge sev-${severity}` }, severity);
}

/** A small labelled number. */
export function stat(label, value, extra) {
  return h('div', { class: 'stat' }, h('div', { class: 'stat-value' }, value), h('div', { class: 'stat-label' }, label), extra);
}

/** A note in the page: `info`, `warn` or `error`. */
export function note(kind, ...children) {
  return h('p', { class: `note note-${kind}`, role: kind === 'error' ? 'alert' : null }, ...children);
}

/** A link within the viewer (`#/tasks?site=3`). */
export function link(hash, ...children) {
  return h('a', { href: hash }, ...children);
}
