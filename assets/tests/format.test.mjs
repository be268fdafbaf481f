import test from 'node:test';
import assert from 'node:assert/strict';

import { bytes, bytesPerSecond, count, duration, perSecond, shortPath } from '../format.js';

test('durations read at the right scale', () => {
  assert.deepEqual(
    [0, 250, 4_200, 45_000, 185_000, 7_800_000, 270_000_000].map(duration),
    ['0 ms', '250 ms', '4.2 s', '45 s', '3 min 5 s', '2 h 10 min', '3 d 3 h'],
  );
  assert.equal(duration(undefined), '–');
});

test('bytes, counts and rates', () => {
  assert.deepEqual([512, 1536, 20 * 1048576].map(bytes), ['512 B', '1.5 KiB', '20.0 MiB']);
  assert.equal(count(1_000_000), '1,000,000');
  assert.deepEqual([bytesPerSecond(1_176_392.5), bytesPerSecond(-512), bytesPerSecond(null)], ['+1.1 MiB/s', '-512 B/s', '–']);
  assert.deepEqual([perSecond(1.94), perSecond(-0.5, ' B'), perSecond(0)], ['+1.9/s', '-0.5 B/s', '0/s']);
});

test('registry paths keep the crate and version only', () => {
  assert.equal(
    shortPath('/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.54.1/src/sync/mpsc/bounded.rs'),
    'tokio-1.54.1/src/sync/mpsc/bounded.rs',
  );
  assert.equal(shortPath('/rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library/core/src/ops/function.rs'), 'library/core/src/ops/function.rs');
  assert.equal(shortPath('examples/leaky-server/src/main.rs'), 'examples/leaky-server/src/main.rs');
});
