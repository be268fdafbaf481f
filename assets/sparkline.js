// A sparkline of a history (live tasks per second, heap bytes per reading),
// as a small inline SVG with a text equivalent for screen readers.

const NS = 'http://www.w3.org/2000/svg';

function el(tag, attrs) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

/** `values`, oldest first; `label` describes them (`live tasks, last 60 s`). */
export function sparkline(values, { width = 120, height = 24, label = '', format = String } = {}) {
  const svg = el('svg', { width, height, viewBox: `0 0 ${width} ${height}`, class: 'spark', role: 'img' });
  const n = values?.length ?? 0;
  if (n === 0) {
    svg.setAttribute('aria-label', `${label}: no history yet`);
    return svg;
  }
  const max = Math.max(...values);
  const min = Math.min(...values);
  // From zero, so that churn around a level does not look like a trend.
  const low = Math.min(0, min);
  const span = max - low || 1;
  const x = (i) => (n === 1 ? width : (i / (n - 1)) * (width - 2) + 1);
  const y = (v) => height - 2 - ((v - low) / span) * (height - 4);
  const points = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
  const text = `${label}: from ${format(values[0])} to ${format(values[n - 1])}, between ${format(min)} and ${format(max)}`;
  svg.setAttribute('aria-label', text);
  const title = el('title', {});
  title.textContent = text;
  svg.append(title);
  svg.append(el('polyline', { points, fill: 'none', stroke: 'currentColor', 'stroke-width': 1.5 }));
  svg.append(el('circle', { cx: x(n - 1), cy: y(values[n - 1]), r: 2, fill: 'currentColor' }));
  return svg;
}
