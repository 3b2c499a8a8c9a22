// The codec policy against a simulated sender: compressors feeding a ring that the links drain,
// in 5 ms steps of a fluid model. The shell's measurements are reproduced: time the links
// waited with nothing to send (starved), time data waited for the links (backlog), busy time.
import { describe, expect, test } from "bun:test";
import { CODEC_LZ4, CODEC_NONE, type CodecWord } from "../src/codec";
import { AUTO_LADDER, CodecPolicy, FAST_LINKS, HOLD_MIN_MS, PROBE_AHEAD, PROBE_MAX_MS, START_WORD, WARMUP_MS, WINDOW_MS } from "../src/core/codec-policy";

interface Data {
  /** Input MB/s one compressor manages, per codec word. */
  speed: Record<number, number>;
  /** Wire bytes per input byte, per codec word. */
  ratio: Record<number, number>;
}

// One core on a tar of /usr (see codec-policy.ts).
// none (-1): the sender thread reads chunks straight into its ring, a CRC pass (5 GB/s) per byte.
const USR: Data = {
  speed: { [-1]: 2500, 0: 1000, 1: 580, 3: 310, 6: 140 },
  ratio: { [-1]: 1, 0: 0.68, 1: 0.59, 3: 0.58, 6: 0.57 },
};
// Random bytes: the chunks skip the compressors (only probes), nothing shrinks.
const RANDOM: Data = {
  speed: { [-1]: 50_000, 0: 50_000, 1: 50_000, 3: 50_000, 6: 50_000 },
  ratio: { [-1]: 1, 0: 1, 1: 1, 3: 1, 6: 1 },
};

interface Phase {
  ms: number;
  /** Wire MB/s the links take. */
  linkRate: number;
  data: Data;
  /** Input MB/s available on stdin (default: unlimited). */
  inputRate?: number;
}

interface Trace {
  /** [time, codec] after each window. */
  windows: [number, CodecWord][];
  policy: CodecPolicy;
}

const STEP = 5;
const WORKERS = 2;
function simulate(phases: Phase[], ladder = AUTO_LADDER, RING_MB = 16): Trace {
  const policy = new CodecPolicy(ladder, WORKERS, 0);
  let t = 0;
  let fill = 0; // wire MB in the ring, not yet sent
  const totals = { starvedMs: 0, backlogMs: 0, busyMs: 0, producedBytes: 0, drainedBytes: 0, inputBytes: 0 };
  const windows: [number, CodecWord][] = [];
  for (const p of phases) {
    for (const end = t + p.ms; t < end; t += STEP) {
      const word = policy.current();
      const dt = STEP / 1000;
      // Compressors: as much as they manage, stdin gives, and the ring has room for.
      const canInput = Math.min(WORKERS * p.data.speed[word]! * dt, (p.inputRate ?? Infinity) * dt);
      // The probe's read-ahead bound (on what is in the ring: the model has no acknowledgements).
      const room = Math.min(RING_MB, policy.readAhead(t) / 1e6) - fill;
      const wire = Math.max(0, Math.min(canInput * p.data.ratio[word]!, room));
      const input = wire / p.data.ratio[word]!;
      // none is the sender thread's, not the Workers': their busy time does not grow.
      if (word !== CODEC_NONE) totals.busyMs += (input / (p.data.speed[word]! * dt)) * STEP; // summed over workers
      totals.inputBytes += input * 1e6;
      // Links: drain what is there, up to their rate.
      const want = p.linkRate * dt;
      const sent = Math.min(fill + wire, want);
      const compressorsBehind = input >= canInput - 1e-12 && canInput < (p.inputRate ?? Infinity) * dt;
      if (sent < want && compressorsBehind) totals.starvedMs += STEP * (1 - sent / want);
      fill = fill + wire - sent;
      totals.producedBytes += wire * 1e6;
      totals.drainedBytes += sent * 1e6;
      if (fill > 1e-9) totals.backlogMs += STEP;
      if (policy.due(t + STEP)) windows.push([t + STEP, policy.update(t + STEP, totals)]);
    }
  }
  return { windows, policy };
}

/** The codec at the end of the trace, and when it was last changed. */
function settled(trace: Trace): { codec: CodecWord; since: number } {
  const w = trace.windows;
  const codec = w.at(-1)![1];
  let i = w.length - 1;
  while (i > 0 && w[i - 1]![1] === codec) i--;
  return { codec, since: i === 0 ? 0 : w[i]![0] };
}

function codecAt(trace: Trace, ms: number): CodecWord {
  let c = trace.windows[0]![1];
  for (const [t, w] of trace.windows) if (t <= ms) c = w;
  return c;
}

function changes(trace: Trace, from = 0, to = Infinity): number {
  let n = 0;
  const w = trace.windows;
  for (let i = 1; i < w.length; i++) if (w[i]![0] > from && w[i]![0] <= to && w[i]![1] !== w[i - 1]![1]) n++;
  return n;
}

describe("codec policy against a simulated bottleneck", () => {
  test("slow links: the level rises to the top of the ladder within about a second and stays", () => {
    const trace = simulate([{ ms: 10_000, linkRate: 40, data: USR }]);
    const s = settled(trace);
    expect(s.codec).toBe(6);
    // The probe's first window shows the backlog, then the warm-up, then 2 steps of 2 windows.
    expect(s.since).toBeLessThanOrEqual(WINDOW_MS + WARMUP_MS + 4 * WINDOW_MS + 50);
    expect(codecAt(trace, WINDOW_MS)).toBe(START_WORD);
    expect(changes(trace)).toBe(2); // zstd-1 (after the probe's first window) -> 3 -> 6, nothing after
  });

  test("a 64 MB ring still filling: the links' need, not the compressors' rush to fill it, decides", () => {
    // Filling 64 MB at lz4 takes ~50 ms of the 2 compressors, draining it 1.6 s of the link.
    const trace = simulate([{ ms: 3000, linkRate: 40, data: USR }], AUTO_LADDER, 64);
    expect(codecAt(trace, 1200)).toBe(6);
  });

  test("links faster than the compressors: the level falls to none (chunks as they are) within a second", () => {
    const trace = simulate([
      { ms: 3000, linkRate: 40, data: USR },
      { ms: 5000, linkRate: 2000, data: USR },
    ]);
    expect(codecAt(trace, 3000)).toBe(6);
    const s = settled(trace);
    expect(s.codec).toBe(CODEC_NONE);
    expect(s.since - 3000).toBeLessThanOrEqual(1000);
    // Stepping down does not bounce back up while the compressors stay the bottleneck.
    expect(changes(trace, 4000)).toBe(0);
  });

  test("a middle level that fits is kept: no oscillation every window, retries of the level above back off", () => {
    // zstd-6 costs far more than the ladder assumes on this data: it is tried (the prior says it
    // fits), starves the links, and is then left alone for 1, 2, 4, 8, 16 s.
    const costly: Data = { speed: { ...USR.speed, 6: 40 }, ratio: USR.ratio };
    const trace = simulate([{ ms: 40_000, linkRate: 100, data: costly }]);
    let at3 = 0;
    for (const [, w] of trace.windows) if (w === 3) at3++;
    expect(at3 / trace.windows.length).toBeGreaterThan(0.9);
    // 3 steps up, then each retry of 6 is two changes: at most 1 + 2 + 4 + 8 + 16 s of holds in 40 s.
    expect(changes(trace)).toBeLessThanOrEqual(3 + 2 * 6);
    // What a level fed the links when it starved them is believed for 30 s: retries at most that often.
    expect(changes(trace, 11_000)).toBeLessThanOrEqual(2 * 3);
    // Never two changes in consecutive windows after the first second.
    const w = trace.windows;
    for (let i = 2; i < w.length; i++) {
      if (w[i]![0] < 1000) continue;
      const a = w[i - 2]![1] !== w[i - 1]![1];
      const b = w[i - 1]![1] !== w[i]![1];
      expect(a && b).toBe(false);
    }
    expect(HOLD_MIN_MS).toBeGreaterThanOrEqual(4 * WINDOW_MS);
  });

  test("follows the data: random stretches raise the level, text after them brings it down again", () => {
    // Links at 300 MB/s: text needs zstd-3 or cheaper; random data leaves the compressors idle.
    const trace = simulate([
      { ms: 3000, linkRate: 300, data: USR },
      { ms: 3000, linkRate: 300, data: RANDOM },
      { ms: 3000, linkRate: 300, data: USR },
    ]);
    expect(codecAt(trace, 3000)).toBeLessThanOrEqual(3);
    expect(codecAt(trace, 6000)).toBe(6);
    for (let t = 6800; t <= 9000; t += WINDOW_MS) expect(codecAt(trace, t)).toBeLessThanOrEqual(3);
  });

  test("neither side the bottleneck (a slow producer): the start codec once the probe gives up, and it stays", () => {
    const trace = simulate([{ ms: 5000, linkRate: 1000, data: USR, inputRate: 50 }]);
    expect(codecAt(trace, PROBE_MAX_MS - WINDOW_MS)).toBe(CODEC_NONE);
    expect(codecAt(trace, PROBE_MAX_MS + WINDOW_MS)).toBe(START_WORD);
    expect(changes(trace)).toBe(1);
    expect(settled(trace).codec).toBe(START_WORD);
  });

  test("links faster than this sender reads the raw stream: none from the first byte, nothing compressed", () => {
    const trace = simulate([{ ms: 3000, linkRate: 3000, data: USR }]);
    // Nothing until lz4's hold has passed (a sender short of CPU for frames may move more with
    // it, see below); that one try and back: 2 changes.
    for (const [t, w] of trace.windows) if (t <= WINDOW_MS + HOLD_MIN_MS) expect(w).toBe(CODEC_NONE);
    expect(changes(trace)).toBe(2);
    // A level stepped up to is on trial: one starved window takes it back (a level in use needs two).
    expect(trace.windows.filter(([, w]) => w === CODEC_LZ4).length).toBe(1);
    expect(settled(trace).codec).toBe(CODEC_NONE);
    expect(trace.policy.readAhead(3000)).toBe(Infinity);
  });

  test("links that keep pace with the raw stream: lz4 is never tried again at none; a sender held back by sending is", () => {
    const trace = simulate([{ ms: 6000, linkRate: 8000, data: USR }]);
    expect(changes(trace)).toBe(0);
    expect(settled(trace).codec).toBe(CODEC_NONE);
    // At none after a fast probe: windows without backlog try nothing, however long; once this
    // thread spends most of a window sending at under FAST_LINKS, lz4 is tried (after its hold).
    const w = WINDOW_MS;
    const p = new CodecPolicy(AUTO_LADDER, 2, 0);
    const m = { starvedMs: 0, backlogMs: 0, busyMs: 0, producedBytes: 0, drainedBytes: 0, inputBytes: 0, sendMs: 0 };
    let t = 0;
    const window = (rate: number, sendShare: number) => {
      t += w;
      m.inputBytes += rate * w;
      m.producedBytes += rate * w;
      m.drainedBytes += rate * w;
      m.sendMs += sendShare * w;
      return p.update(t, m);
    };
    expect(window(FAST_LINKS * 1.5, 0.2)).toBe(CODEC_NONE); // the probe: fast links
    while (t < 5000) expect(window(FAST_LINKS * 1.5, 0.2)).toBe(CODEC_NONE);
    expect(p.changes).toBe(0);
    expect(window(FAST_LINKS * 0.4, 0.8)).toBe(CODEC_NONE); // one vote
    expect(window(FAST_LINKS * 0.4, 0.8)).toBe(CODEC_LZ4);
  });

  test("the probe: at none, at most PROBE_AHEAD read ahead, until backlog (compress) or a fast window (none)", () => {
    const slow = new CodecPolicy(AUTO_LADDER, 2, 0);
    expect(slow.current()).toBe(CODEC_NONE);
    expect(slow.readAhead(0)).toBe(PROBE_AHEAD);
    // A window with the links holding data back: zstd-1 at once, and the ring's whole size again.
    const t = { starvedMs: 0, backlogMs: 0.6 * WINDOW_MS, busyMs: 0, producedBytes: 1, drainedBytes: 1, inputBytes: 15e6 };
    expect(slow.update(WINDOW_MS, t)).toBe(START_WORD);
    expect(slow.readAhead(WINDOW_MS)).toBe(Infinity);
    // A window just under FAST_LINKS without backlog decides nothing; one at it keeps none.
    const fast = new CodecPolicy(AUTO_LADDER, 2, 0);
    const f = { starvedMs: 0, backlogMs: 0, busyMs: 0, producedBytes: 1, drainedBytes: 1, inputBytes: (FAST_LINKS - 1) * WINDOW_MS };
    expect(fast.update(WINDOW_MS, f)).toBe(CODEC_NONE);
    expect(fast.readAhead(WINDOW_MS)).toBe(PROBE_AHEAD);
    f.inputBytes += FAST_LINKS * WINDOW_MS;
    expect(fast.update(2 * WINDOW_MS, f)).toBe(CODEC_NONE);
    expect(fast.readAhead(2 * WINDOW_MS)).toBe(Infinity);
    expect(fast.changes).toBe(0);
    // Without none on the ladder (never chosen by the shell, but allowed) there is no probe.
    const plain = new CodecPolicy([{ word: CODEC_LZ4, cost: 1 }, { word: 1, cost: 1.75 }], 2, 0);
    expect(plain.readAhead(0)).toBe(Infinity);
  });

  test("the probe reads the kernel: links that cost this thread its time compress at once, a backlog that drains fast does not", () => {
    const w = WINDOW_MS;
    // 1 Gbit at MTU 1500: no backlog, 117 MB/s moved, 80 % of the window in sendmmsg.
    const htb = new CodecPolicy(AUTO_LADDER, 2, 0);
    const sent = { starvedMs: 0, backlogMs: 0, busyMs: 0, producedBytes: 17.5e6, drainedBytes: 17.5e6, inputBytes: 17.5e6, sendMs: 0.8 * w };
    expect(htb.update(w, sent)).toBe(START_WORD);
    expect(htb.changes).toBe(1);
    // What none moved is remembered: lz4 starving those links later (170 MB/s of input, the
    // links taking 117 of wire) is not left for none, which would move 117.
    const lz4Only = new CodecPolicy([{ word: CODEC_NONE, cost: 0.2 }, { word: CODEC_LZ4, cost: 1 }], 2, 0);
    expect(lz4Only.update(w, sent)).toBe(CODEC_LZ4);
    let t = w + WARMUP_MS + w;
    for (let k = 1; k <= 4; k++, t += w) {
      const m = { ...sent, starvedMs: 0.3 * w * k, busyMs: 2 * w * k, producedBytes: 17.5e6 + 117e3 * w * k, drainedBytes: 17.5e6 + 117e3 * w * k, inputBytes: 17.5e6 + 170e3 * w * k, sendMs: 0.8 * w * (k + 1) };
      expect(lz4Only.update(t, m)).toBe(CODEC_LZ4);
    }
    // Most of the window in sendmmsg, but at veth speed (400 MB/s of it), 240 MB/s moved: no verdict yet.
    const veth = new CodecPolicy(AUTO_LADDER, 2, 0);
    const fastSend = { starvedMs: 0, backlogMs: 0, busyMs: 0, producedBytes: 36e6, drainedBytes: 36e6, inputBytes: 36e6, sendMs: 0.6 * w };
    expect(veth.update(w, fastSend)).toBe(CODEC_NONE);
    expect(veth.readAhead(w)).toBe(PROBE_AHEAD);
    // A receiver still starting: data held back all window, yet drained at 700 MB/s.
    const cold = new CodecPolicy(AUTO_LADDER, 2, 0);
    expect(cold.update(w, { ...fastSend, backlogMs: w, drainedBytes: 700e3 * w, inputBytes: 0.29e6 * w })).toBe(CODEC_NONE);
    expect(cold.readAhead(w)).toBe(PROBE_AHEAD);
  });

  test("one starved window (the CPU taken elsewhere for a moment) is not a step down; two in a row are", () => {
    const hiccup: Data = { speed: Object.fromEntries(Object.entries(USR.speed).map(([k, v]) => [k, k === "-1" ? v : v / 15])), ratio: USR.ratio };
    const trace = simulate([
      { ms: 3010, linkRate: 125, data: USR },
      { ms: 100, linkRate: 125, data: hiccup }, // inside the window (3000, 3150]
      { ms: 2000, linkRate: 125, data: USR },
    ]);
    const top = codecAt(trace, 3000);
    expect(top).toBe(6);
    for (const [t, w] of trace.windows) if (t >= 3000) expect(w).toBe(top);
    const longer = simulate([
      { ms: 3010, linkRate: 125, data: USR },
      { ms: 400, linkRate: 125, data: hiccup },
      { ms: 2000, linkRate: 125, data: USR },
    ]);
    expect(codecAt(longer, 3450)).toBeLessThan(6);
  });

  test("a sender whose compressors are slow (CPU taken by frames, as at MTU 1500): lz4 that starves the links is left for none once, then kept", () => {
    // lz4 at 2 x 100 MB/s of input feeds 136 MB/s of wire; the links take 150: starved. none
    // moves 150 MB/s of input, lz4 200: back to lz4 after its hold, and there it stays.
    const slow: Data = { speed: { ...USR.speed, 0: 100 }, ratio: USR.ratio };
    const trace = simulate([{ ms: 12_000, linkRate: 150, data: slow }], [{ word: CODEC_NONE, cost: 0.2 }, { word: CODEC_LZ4, cost: 1 }]);
    const s = settled(trace);
    expect(s.codec).toBe(CODEC_LZ4);
    expect(s.since).toBeLessThan(3000);
    let atLz4 = 0;
    for (const [, w] of trace.windows) if (w === CODEC_LZ4) atLz4++;
    expect(atLz4 / trace.windows.length).toBeGreaterThan(0.8);
  });

  test("a 1 Gbit link and a sender short of CPU for a moment: lz4 that starves the links still moves more than none, so none is not gone to", () => {
    // 1.2 s in which the compressors get a fifteenth of their speed: zstd-1 starves the links,
    // and so does lz4 (2 x 67 MB/s of input, 91 on the wire of the 125 the links take), yet
    // none would move only 125.
    const starvedCpu: Data = { speed: Object.fromEntries(Object.entries(USR.speed).map(([k, v]) => [k, k === "-1" ? v : v / 15])), ratio: USR.ratio };
    const trace = simulate([
      { ms: 3000, linkRate: 125, data: USR },
      { ms: 1200, linkRate: 125, data: starvedCpu },
      { ms: 3000, linkRate: 125, data: USR },
    ]);
    const after = trace.windows.filter(([t]) => t > WINDOW_MS);
    expect(after.some(([t, w]) => t > 3000 && t <= 4200 && w === CODEC_LZ4)).toBe(true);
    for (const [, w] of after) expect(w).not.toBe(CODEC_NONE);
  });

  test("a shortage of CPU in which a starved zstd-1 still moves about what lz4 could over those links: zstd-1 is kept", () => {
    // zstd-1 at 2 x 90 MB/s of input: 107 MB/s of wire, the links take 125 (14 % starved once the ring has drained);
    // lz4 could move 125 / 0.678 = 184, not 10 % more than 180.
    const short: Data = { speed: Object.fromEntries(Object.entries(USR.speed).map(([k, v]) => [k, k === "-1" ? v : (v * 90) / 580])), ratio: USR.ratio };
    const ladder = AUTO_LADDER.filter((r) => r.word <= 1);
    const trace = simulate([
      { ms: 3000, linkRate: 125, data: USR },
      { ms: 2500, linkRate: 125, data: short },
      { ms: 1500, linkRate: 125, data: USR },
    ], ladder);
    expect(codecAt(trace, 3000)).toBe(1);
    for (const [t, w] of trace.windows) if (t >= 3000) expect(w).toBe(1);
  });

  test("links that take more than lz4 makes but less than the raw stream: a starved lz4 is kept, as it moves more input than none", () => {
    // lz4: 2 x 1000 MB/s of input, 1360 MB/s on the wire; none: 1600 MB/s, all the links take.
    const trace = simulate([{ ms: 6000, linkRate: 1600, data: USR }]);
    const s = settled(trace);
    expect(s.codec).toBe(CODEC_LZ4);
    expect(s.since).toBeLessThan(2500);
    expect(changes(trace)).toBeLessThanOrEqual(3);
  });

  test("the warm-up windows (the links wait for the first chunk, kernel queues fill) decide nothing", () => {
    const p = new CodecPolicy(AUTO_LADDER, 2, 0);
    const totals = { starvedMs: 0, backlogMs: WINDOW_MS, busyMs: 0, producedBytes: 1, drainedBytes: 1 };
    expect(p.update(WINDOW_MS, totals)).toBe(START_WORD); // the probe saw the links hold data back
    let t = WINDOW_MS;
    for (; t + WINDOW_MS <= WINDOW_MS + WARMUP_MS; ) {
      t += WINDOW_MS;
      totals.starvedMs += WINDOW_MS / 2;
      expect(p.update(t, totals)).toBe(START_WORD);
    }
    // After it, one mildly starved window is a vote (a moment's CPU taken elsewhere); two in a
    // row step down, and so does one starved for half the window or more.
    totals.starvedMs += 0.3 * WINDOW_MS;
    expect(p.update(t + WINDOW_MS, totals)).toBe(START_WORD);
    totals.starvedMs += 0.3 * WINDOW_MS;
    expect(p.update(t + 2 * WINDOW_MS, totals)).toBe(CODEC_LZ4);
    t += 2 * WINDOW_MS;
    for (const share of [0.3, 0, 0.3, 0]) {
      t += WINDOW_MS;
      totals.starvedMs += share * WINDOW_MS;
      expect(p.update(t, totals)).toBe(CODEC_LZ4);
    }
    totals.starvedMs += 0.5 * WINDOW_MS;
    expect(p.update(t + WINDOW_MS, totals)).toBe(CODEC_NONE);
  });

  test("a ladder of one codec never changes; the start is zstd-1, else lz4, else the cheapest", () => {
    const trace = simulate([{ ms: 3000, linkRate: 40, data: USR }], [{ word: CODEC_LZ4, cost: 1 }]);
    expect(changes(trace)).toBe(0);
    expect(START_WORD).toBe(1);
    // With none on the ladder the probe comes first (see the probe's test): where it goes after.
    const backlog = { starvedMs: 0, backlogMs: WINDOW_MS, busyMs: 0, producedBytes: 1, drainedBytes: 1 };
    const after = (ladder: { word: CodecWord; cost: number }[]) => new CodecPolicy(ladder, 4, 0).update(WINDOW_MS, backlog);
    expect(after([...AUTO_LADDER])).toBe(1);
    expect(new CodecPolicy([{ word: CODEC_LZ4, cost: 1 }, { word: 3, cost: 3 }], 4, 0).current()).toBe(CODEC_LZ4);
    // A receiver without libzstd: none and lz4 are left, and lz4 is where it goes.
    expect(after([{ word: CODEC_NONE, cost: 0.2 }, { word: CODEC_LZ4, cost: 1 }])).toBe(CODEC_LZ4);
    expect(new CodecPolicy([{ word: CODEC_NONE, cost: 0.2 }, { word: 3, cost: 3 }], 4, 0).current()).toBe(CODEC_NONE);
    expect(() => new CodecPolicy([], 4, 0)).toThrow("empty ladder");
  });
});
