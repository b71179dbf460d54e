// Unit tests of web/output/arrival-jitter.js (no browser: the class is plain arithmetic). The
// stall rule: recurring stalls of the link raise the estimate to the highest peak + a margin, a
// clean link keeps the 5 s p99, and the rule lets go once fewer than two stalls are left in its
// 20 s window.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

// web/ is served as ES modules without a package.json; import the file's text as one.
const src = readFileSync(new URL('../../web/output/arrival-jitter.js', import.meta.url), 'utf8');
const { ArrivalJitter } = await import(`data:text/javascript,${encodeURIComponent(src)}`);

const FRAME_MS = 20;

/**
 * Feeds `seconds` of 20 ms frames from frame `first` on: each arrives 30 ms + 0-4 ms (seeded)
 * after its timestamp, except that frames due inside a stall [at, at + ms) all arrive at its end
 * (TCP holds them behind a retransmission). Returns the next frame index.
 */
function feed(j, first, seconds, stalls = [], seed = 1) {
  let s = seed, last = 0;
  const n = Math.round(seconds * 1000 / FRAME_MS);
  for (let i = first; i < first + n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    const ts = i * FRAME_MS;
    let at = ts + 30 + (s % 5);
    for (const st of stalls) if (at >= st.at && at < st.at + st.ms) at = st.at + st.ms;
    at = Math.max(at, last);
    last = at;
    j.arrived(ts, at);
  }
  return first + n;
}

test('a clean link keeps the 5 s p99', () => {
  const j = new ArrivalJitter();
  feed(j, 0, 30);
  assert.equal(j.stallMs(), 0);
  assert.equal(j.lateMs(), j.percentileMs());
  assert.ok(j.lateMs() <= 5, `p99 of 0-4 ms jitter: ${j.lateMs()}`);
});

test('one stall does not switch the rule on (no ratchet)', () => {
  const j = new ArrivalJitter();
  const next = feed(j, 0, 10, [{ at: 5000, ms: 200 }]);
  assert.equal(j.stallMs(), 0, 'a single stall is one peak');
  feed(j, next, 6);
  assert.ok(j.lateMs() <= 5, `back to the p99 once the stall left the 5 s window: ${j.lateMs()}`);
});

test('one stall whose burst straddles the start of a second is still one stall', () => {
  const j = new ArrivalJitter();
  // Clean for 5 s (buckets start at 30 ms past each second), then frames due in 4.6-5.0 s are
  // held and arrive 2 ms apart from 5.02 s on: the burst runs past the start of the next
  // bucket (5.03 s) with frames still 300 ms late in it.
  let i = 0;
  for (; i * FRAME_MS < 4600; i++) j.arrived(i * FRAME_MS, i * FRAME_MS + 30);
  let k = 0;
  for (; i * FRAME_MS < 5000; i++, k++) j.arrived(i * FRAME_MS, 5020 + 2 * k);
  const late = j._buckets.map((x) => x.max - 30).filter((x) => x > 60);
  assert.equal(late.length, 2, `the burst spans two buckets: ${JSON.stringify(j._buckets)}`);
  assert.equal(j.stallMs(), 0, 'one stall, not two');
  for (; i * FRAME_MS < 8000; i++) j.arrived(i * FRAME_MS, i * FRAME_MS + 30);
  assert.equal(j.stallMs(), 0, 'still one stall afterwards');
});

test('recurring stalls switch the rule on; it lets go within 20 s of the last', () => {
  const j = new ArrivalJitter();
  // 150 ms stalls every 4 s, then a 250 ms one: each leaves the 5 s window before the next.
  const stalls = [3000, 7000, 11000, 15000].map((at) => ({ at, ms: 150 }));
  stalls.push({ at: 19000, ms: 250 });
  let next = feed(j, 0, 20, stalls);
  assert.ok(j.stallMs() >= 250 + 40, `highest peak (250 ms) + margin: ${j.stallMs()}`);
  assert.equal(j.lateMs(), j.stallMs());
  // Clean from here on (last stall ended at 19.25 s): still on 10 s later; off once fewer than
  // two stalls are left in the 20 s window, at the latest 20 s after the last.
  next = feed(j, next, 10);
  assert.ok(j.stallMs() >= 250 + 40, `the stalls are still in the 20 s window: ${j.stallMs()}`);
  feed(j, next, 12);
  assert.equal(j.stallMs(), 0, 'off once the stalls left the 20 s window');
  assert.ok(j.lateMs() <= 5, `back to the clean p99: ${j.lateMs()}`);
});

test('the first stall of a recurring series is not enough; the second is', () => {
  const j = new ArrivalJitter();
  let next = feed(j, 0, 4, [{ at: 2000, ms: 120 }]);
  assert.equal(j.stallMs(), 0);
  feed(j, next, 4, [{ at: 5500, ms: 120 }]);
  assert.ok(j.stallMs() >= 120 + 40, `on after the second stall: ${j.stallMs()}`);
});
