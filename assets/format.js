// Numbers as people read them: durations, byte sizes, counts, and source
// locations without the registry prefixes that make them unreadable.

/** `250 ms`, `4.2 s`, `3 min 5 s`, `2 h 10 min`, `3 d 4 h`. */
export function duration(ms) {
  if (ms == null || !Number.isFinite(ms)) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.floor(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
  const hrs = Math.floor(m / 60);
  if (hrs < 24) return `${hrs} h ${m % 60} min`;
  return `${Math.floor(hrs / 24)} d ${hrs % 24} h`;
}

/** `512 B`, `1.5 KiB`, `20.0 MiB`. */
export function bytes(n) {
  if (n == null || !Number.isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Math.abs(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  const sign = n < 0 ? '-' : '';
  return i === 0 ? `${sign}${v} B` : `${sign}${v.toFixed(1)} ${units[i]}`;
}

/** A growth in bytes per second: `+1.1 MiB/s`. */
export function bytesPerSecond(n) {
  if (n == null || !Number.isFinite(n)) return '–';
  return `${n > 0 ? '+' : ''}${bytes(Math.round(n))}/s`;
}

/** `1,000,000`. */
export function count(n) {
  return n == null ? '–' : Number(n).toLocaleString('en-US');
}

/** A rate per second, with a sign: `+1.5/s`. */
export function perSecond(n, unit = '') {
  if (n == null || !Number.isFinite(n)) return '–';
  const sign = n > 0 ? '+' : '';
  const v = Math.abs(n) >= 100 ? Math.round(n) : Math.round(n * 10) / 10;
  return `${sign}${v}${unit}/s`;
}

/**
 * A source path as far as it says something: a crate from the cargo
 * registry keeps its `name-version/` part, a rustc source its `library/`
 * part; the app's own paths are left alone.
 */
export function shortPath(path) {
  if (!path) return path;
  const registry = path.match(/\/registry\/src\/[^/]+\/(.+)$/);
  if (registry) return registry[1];
  const git = path.match(/\/git\/checkouts\/[^/]+\/[^/]+\/(.+)$/);
  if (git) return git[1];
  const std = path.match(/\/rustc\/[0-9a-f]+\/(.+)$/);
  if (std) return std[1];
  return path;
}

/** Local time of an instant `agoMs` before `now`, `12:03:05`. */
export function clock(now, agoMs = 0) {
  const d = new Date(now - agoMs);
  return d.toTimeString().slice(0, 8);
}
