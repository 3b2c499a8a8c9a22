// User-space impairment bridge: forwards every 0x88b5 frame between two veths in the middle
// namespace, applying impair.ts decisions per direction (the kernel here has no netem).
//
//   bun test/support/impair-bridge.ts --a DEV --b DEV [--seed N] [options] [--stats FILE]
//
// Direction options take a prefix: --ab-X (frames arriving on --a, leaving on --b), --ba-X, or
// none for both directions:
//   --loss P  --burst P:LEN  --dup P  --corrupt P  --delay MS  --rate MBIT[:QUEUEKB[:BURSTKB]]
//   --reorder P:MIN:MAX[:TIMEOUTMS]   hold until MIN..MAX later frames passed (timeout default 100)
//   --reorder P:MINms:MAXms           hold for MIN..MAX ms
//   --blackout FROM:TO                ms after "ready"; TO may be "inf"; repeatable
// Other: --pool N (frames buffered, default 4096), --batch N (default 64).
// Prints "ready" once both sockets are open; writes counters as JSON to --stats on SIGTERM,
// SIGINT and exit.
//
// Also, for measuring it: `probe-send --dev D --count N --size S --rate MBIT` and
// `probe-recv --dev D --count N [--idle MS] [--verify 0|1]` (see runProbe).

import { dlopen, type Pointer } from "bun:ffi";
import { writeFileSync } from "node:fs";
import { POLLERR, POLLIN, POLLOUT, Poller, addressOf } from "../../ffi/libc";
import { lookupDevice } from "../../src/shell/device";
import { PacketSocket } from "../../src/shell/packet-socket";
import { type DirectionConfig, type FrameHost, type ImpairCounters, Impairment, deriveSeed } from "./impair";
import type { Topology } from "./netns";

export interface BridgeOptions {
  seed?: number;
  /** Applies to both directions; `ab`/`ba` fields override it. */
  both?: DirectionConfig;
  ab?: DirectionConfig;
  ba?: DirectionConfig;
  /** Blackout windows for both directions, in ms after the bridge is ready. */
  blackouts?: Array<[number, number]>;
  pool?: number;
  batch?: number;
}

export interface SocketStats {
  rxFrames: number;
  txFrames: number;
  /** Frames the kernel dropped because the bridge read too slowly. */
  kernelDrops: number;
}

export interface BridgeStats {
  seed: number;
  elapsedMs: number;
  ab: ImpairCounters;
  ba: ImpairCounters;
  a: SocketStats;
  b: SocketStats;
  /** Receive passes skipped because the frame pool was (nearly) all held or queued. */
  poolStarved: number;
  /** CPU time (user + system) the bridge used from ready to stop. */
  cpuMs: number;
  /** Longest time between two passes of the loop beyond the poll wait (scheduling, GC). */
  maxStallMs: number;
}

// ------------------------------------------------------------------ option text

function fmtBlackout([from, to]: [number, number]): string {
  return `${from}:${to === Infinity ? "inf" : to}`;
}

function directionArgs(prefix: string, c: DirectionConfig | undefined): string[] {
  if (!c) return [];
  const a: string[] = [];
  const p = prefix ? `--${prefix}-` : "--";
  if (c.loss) a.push(`${p}loss`, String(c.loss));
  if (c.burst) a.push(`${p}burst`, `${c.burst.p}:${c.burst.len}`);
  if (c.dup) a.push(`${p}dup`, String(c.dup));
  if (c.corrupt) a.push(`${p}corrupt`, String(c.corrupt));
  if (c.delayMs) a.push(`${p}delay`, String(c.delayMs));
  if (c.rateMbit) {
    a.push(`${p}rate`, `${c.rateMbit}:${(c.rateQueueBytes ?? 1 << 20) / 1024}:${(c.rateBurstBytes ?? 2 * 9018) / 1024}`);
  }
  if (c.reorder) {
    const r = c.reorder;
    a.push(
      `${p}reorder`,
      r.unit === "ms" ? `${r.p}:${r.min}ms:${r.max}ms` : `${r.p}:${r.min}:${r.max}:${r.timeoutMs ?? 100}`,
    );
  }
  for (const w of c.blackouts ?? []) a.push(`${p}blackout`, fmtBlackout(w));
  return a;
}

/** Command-line arguments (after the device names) that reproduce `opts`. */
export function bridgeArgs(opts: BridgeOptions): string[] {
  const a = ["--seed", String(opts.seed ?? 1)];
  a.push(...directionArgs("", opts.both), ...directionArgs("ab", opts.ab), ...directionArgs("ba", opts.ba));
  for (const w of opts.blackouts ?? []) a.push("--blackout", fmtBlackout(w));
  if (opts.pool) a.push("--pool", String(opts.pool));
  if (opts.batch) a.push("--batch", String(opts.batch));
  return a;
}

export interface ParsedArgs {
  a: string;
  b: string;
  seed: number;
  ab: DirectionConfig;
  ba: DirectionConfig;
  stats: string | null;
  pool: number;
  batch: number;
}

function num(name: string, v: string, lo: number, hi: number): number {
  const x = v === "inf" ? Infinity : Number(v);
  if (v.trim() === "" || Number.isNaN(x) || x < lo || x > hi) throw new Error(`--${name}: bad value ${JSON.stringify(v)}`);
  return x;
}

function parts(name: string, v: string, min: number, max: number): string[] {
  const p = v.split(":");
  if (p.length < min || p.length > max) throw new Error(`--${name}: bad value ${JSON.stringify(v)}`);
  return p;
}

export function parseBridgeArgs(argv: string[]): ParsedArgs {
  const out: ParsedArgs = { a: "", b: "", seed: 1, ab: {}, ba: {}, stats: null, pool: 4096, batch: 64 };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    if (!flag.startsWith("--")) throw new Error(`unexpected argument ${JSON.stringify(flag)}`);
    const v = argv[++i];
    if (v === undefined) throw new Error(`${flag} needs a value`);
    let name = flag.slice(2);
    if (name === "a" || name === "b") out[name] = v;
    else if (name === "seed") out.seed = num(name, v, 0, 2 ** 32 - 1) >>> 0;
    else if (name === "stats") out.stats = v;
    else if (name === "pool") out.pool = num(name, v, 64, 1 << 20) | 0;
    else if (name === "batch") out.batch = num(name, v, 1, 1024) | 0;
    else {
      let dirs: DirectionConfig[] = [out.ab, out.ba];
      if (name.startsWith("ab-")) dirs = [out.ab];
      else if (name.startsWith("ba-")) dirs = [out.ba];
      if (dirs.length === 1) name = name.slice(3);
      for (const d of dirs) applyOption(d, name, v, flag.slice(2));
    }
  }
  if (!out.a || !out.b) throw new Error("--a DEV and --b DEV are required");
  return out;
}

function applyOption(d: DirectionConfig, name: string, v: string, full: string): void {
  switch (name) {
    case "loss":
      d.loss = num(full, v, 0, 1);
      break;
    case "dup":
      d.dup = num(full, v, 0, 1);
      break;
    case "corrupt":
      d.corrupt = num(full, v, 0, 1);
      break;
    case "delay":
      d.delayMs = num(full, v, 0, 60000);
      break;
    case "burst": {
      const [p, len] = parts(full, v, 2, 2);
      d.burst = { p: num(full, p!, 0, 1), len: num(full, len!, 1, 1e9) | 0 };
      break;
    }
    case "rate": {
      const [r, q, b] = parts(full, v, 1, 3);
      d.rateMbit = num(full, r!, 0, 1e6);
      if (q !== undefined) d.rateQueueBytes = num(full, q, 0, 1 << 30) * 1024;
      if (b !== undefined) d.rateBurstBytes = num(full, b, 0, 1 << 30) * 1024;
      break;
    }
    case "reorder": {
      const [p, lo, hi, t] = parts(full, v, 3, 4);
      const ms = lo!.endsWith("ms");
      if (ms !== hi!.endsWith("ms") || (ms && t !== undefined)) throw new Error(`--${full}: bad value ${JSON.stringify(v)}`);
      const min = num(full, ms ? lo!.slice(0, -2) : lo!, ms ? 0 : 1, 1e9);
      const max = num(full, ms ? hi!.slice(0, -2) : hi!, min, 1e9);
      d.reorder = { p: num(full, p!, 0, 1), min, max, unit: ms ? "ms" : "frames" };
      if (t !== undefined) d.reorder.timeoutMs = num(full, t, 0, 1e9);
      break;
    }
    case "blackout": {
      const [from, to] = parts(full, v, 2, 2);
      const f = num(full, from!, 0, 1e12);
      (d.blackouts ??= []).push([f, num(full, to!, f, Infinity)]);
      break;
    }
    default:
      throw new Error(`unknown option --${full}`);
  }
}

// ------------------------------------------------------------------ the bridge

// One libc symbol the shared binding lacks: copying a received frame into the pool without
// allocating a subarray per frame.
const { symbols: mem } = dlopen("libc.so.6", { memcpy: { args: ["ptr", "ptr", "u64"], returns: "void" } });

/** Fixed-size frame buffers shared by both directions, handed out as small integer handles. */
class Pool {
  readonly stride: number;
  readonly buf: Uint8Array;
  readonly addr: number;
  readonly views: Uint8Array[];
  readonly len: Int32Array;
  private readonly freeStack: Int32Array;
  private top: number;

  constructor(readonly size: number, maxFrame: number) {
    this.stride = Math.ceil(maxFrame / 64) * 64;
    this.buf = new Uint8Array(size * this.stride);
    this.addr = addressOf(this.buf);
    this.views = Array.from({ length: size }, (_, h) => this.buf.subarray(h * this.stride, (h + 1) * this.stride));
    this.len = new Int32Array(size);
    this.freeStack = new Int32Array(size);
    for (let i = 0; i < size; i++) this.freeStack[i] = size - 1 - i;
    this.top = size;
  }
  get available(): number {
    return this.top;
  }
  alloc(): number {
    return this.top > 0 ? this.freeStack[--this.top]! : -1;
  }
  free(h: number): void {
    this.freeStack[this.top++] = h;
  }
}

/** One direction: frames received on `rx`, impaired, sent on `tx` in emit order. */
class Direction implements FrameHost {
  readonly imp: Impairment;
  // Handles waiting to be sent, in order; the first `committed` sit in tx slots already.
  private readonly q: Int32Array;
  private head = 0;
  private qlen = 0;
  private committed = 0;
  rxFrames = 0;
  txFrames = 0;
  starved = 0;
  private readonly rxAddr: number;

  constructor(
    private readonly pool: Pool,
    readonly rx: PacketSocket,
    readonly tx: PacketSocket,
    cfg: DirectionConfig,
    seed: number,
  ) {
    this.q = new Int32Array(pool.size);
    this.rxAddr = addressOf(rx.rx);
    this.imp = new Impairment(cfg, seed, this, 0, pool.size);
  }

  bytes(h: number): Uint8Array {
    return this.pool.views[h]!;
  }
  length(h: number): number {
    return this.pool.len[h]!;
  }
  clone(h: number): number {
    const c = this.pool.alloc();
    if (c < 0) return -1;
    this.pool.buf.copyWithin(c * this.pool.stride, h * this.pool.stride, h * this.pool.stride + this.pool.len[h]!);
    this.pool.len[c] = this.pool.len[h]!;
    return c;
  }
  emit(h: number): void {
    // Cannot overflow: every handle is in at most one queue and q holds the whole pool.
    this.q[(this.head + this.qlen++) % this.q.length] = h;
  }
  free(h: number): void {
    this.pool.free(h);
  }

  /** True when frames wait for the tx socket to accept them. */
  get blocked(): boolean {
    return this.qlen > 0;
  }

  /** Room for a whole batch plus a duplicate of each frame in it, so alloc() cannot fail. */
  get canReceive(): boolean {
    return this.pool.available >= 2 * this.rx.batch;
  }

  /** Reads up to `maxBatches` batches; returns frames read. */
  receive(now: number, maxBatches: number): number {
    const pool = this.pool, rx = this.rx, rxPtr = this.rxAddr;
    let total = 0;
    if (!this.canReceive) this.starved++;
    for (let b = 0; b < maxBatches && this.canReceive; b++) {
      const n = rx.recv();
      for (let i = 0; i < n; i++) {
        const h = pool.alloc();
        if (h < 0) throw new Error("impair-bridge: frame pool exhausted (bug: canReceive reserves room)");
        const len = rx.rxLength(i);
        mem.memcpy((pool.addr + h * pool.stride) as Pointer, (rxPtr + rx.rxOffset(i)) as Pointer, len);
        pool.len[h] = len;
        this.imp.offer(h, now);
      }
      total += n;
      if (n < rx.batch) break;
    }
    rx.rxRelease();
    this.rxFrames += total;
    return total;
  }

  /** Moves queued frames into tx slots and flushes; frees what the kernel took. */
  pump(): void {
    const tx = this.tx, pool = this.pool, cap = this.q.length;
    while (this.qlen > 0) {
      while (this.committed < this.qlen && tx.txSlot() >= 0) {
        const h = this.q[(this.head + this.committed) % cap]!;
        tx.txCommit(0, pool.addr + h * pool.stride, pool.len[h]!);
        this.committed++;
      }
      const n = tx.flush();
      for (let i = 0; i < n; i++) {
        pool.free(this.q[this.head]!);
        this.head = (this.head + 1) % cap;
      }
      this.qlen -= n;
      this.committed -= n;
      this.txFrames += n;
      if (n === 0) return; // socket full: wait for POLLOUT
    }
  }

  discard(): void {
    this.imp.discard();
    // Frames in tx slots are dropped with the socket; their buffers go back too.
    for (let i = 0; i < this.qlen; i++) this.pool.free(this.q[(this.head + i) % this.q.length]!);
    this.qlen = this.committed = 0;
  }
}

/** Runs until SIGTERM/SIGINT; returns the counters and writes them to args.stats (also when a
 * socket fails mid-run). */
export async function runBridge(args: ParsedArgs): Promise<BridgeStats> {
  const devA = lookupDevice(args.a), devB = lookupDevice(args.b);
  // VLAN tag room on top of the MTU; larger frames would be cut by the socket.
  const maxFrame = Math.max(devA.mtu, devB.mtu) + 18;
  // A deep receive buffer rides out JIT warm-up and scheduling hiccups on a shared 2-core box.
  const sockOpts = { batch: args.batch, maxFrame, rxRing: 32 << 20, sndBuf: 8 << 20 };
  const sa = PacketSocket.open(devA, sockOpts);
  const sb = PacketSocket.open(devB, sockOpts);
  const pool = new Pool(args.pool, maxFrame);
  const ab = new Direction(pool, sa, sb, args.ab, deriveSeed(args.seed, 0));
  const ba = new Direction(pool, sb, sa, args.ba, deriveSeed(args.seed, 1));
  const poller = new Poller(2);
  let kernelDropsA = 0, kernelDropsB = 0, maxStall = 0;

  let running = true;
  const stop = () => {
    running = false;
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);

  const cpu0 = process.cpuUsage();
  const start = performance.now();
  ab.imp.setStart(start);
  ba.imp.setStart(start);
  process.stdout.write("ready\n");

  let stats: BridgeStats | undefined;
  try {
    let nextYield = start + 2;
    let nextStats = start + 1000;
    while (running) {
      const now = performance.now();
      let waited = 0;
      ab.imp.poll(now);
      ba.imp.poll(now);
      const got = ab.receive(now, 4) + ba.receive(now, 4);
      ab.pump();
      ba.pump();

      if (got === 0) {
        const deadline = Math.min(ab.imp.nextDeadline(), ba.imp.nextDeadline());
        // Capped so the loop still yields to the event loop, which delivers the signals.
        const timeout = deadline === Infinity ? 20 : Math.max(0, Math.min(20, Math.ceil(deadline - now)));
        // Without a batch of free buffers, leave frames in the socket (its buffer absorbs them).
        poller.set(0, sa.fd, (ab.canReceive ? POLLIN : 0) | (ba.blocked ? POLLOUT : 0));
        poller.set(1, sb.fd, (ba.canReceive ? POLLIN : 0) | (ab.blocked ? POLLOUT : 0));
        if (timeout > 0) {
          const t = performance.now();
          poller.wait(timeout);
          waited = performance.now() - t;
          // A device that went down leaves an error that poll() reports until it is read.
          if ((poller.revents(0) & POLLERR) !== 0) sa.takeError();
          if ((poller.revents(1) & POLLERR) !== 0) sb.takeError();
        }
      }
      if (now >= nextYield) {
        await new Promise((r) => setImmediate(r));
        nextYield = performance.now() + 2;
        if (now >= nextStats) {
          // PACKET_STATISTICS resets on read: accumulate.
          kernelDropsA += sa.kernelDrops();
          kernelDropsB += sb.kernelDrops();
          nextStats = now + 1000;
        }
      }
      const busy = performance.now() - now - waited;
      if (busy > maxStall) maxStall = busy;
    }
    ab.pump();
    ba.pump();
  } finally {
    kernelDropsA += sa.kernelDrops();
    kernelDropsB += sb.kernelDrops();
    stats = {
      seed: args.seed,
      elapsedMs: performance.now() - start,
      ab: { ...ab.imp.counters },
      ba: { ...ba.imp.counters },
      a: { rxFrames: ab.rxFrames, txFrames: ba.txFrames, kernelDrops: kernelDropsA },
      b: { rxFrames: ba.rxFrames, txFrames: ab.txFrames, kernelDrops: kernelDropsB },
      poolStarved: ab.starved + ba.starved,
      maxStallMs: maxStall,
      cpuMs: (() => {
        const c = process.cpuUsage(cpu0);
        return (c.user + c.system) / 1000;
      })(),
    };
    ab.discard();
    ba.discard();
    sa.close();
    sb.close();
    process.off("SIGTERM", stop);
    process.off("SIGINT", stop);
    if (args.stats) writeFileSync(args.stats, JSON.stringify(stats, null, 2) + "\n");
  }
  return stats;
}

// ------------------------------------------------------------------ probes
// A raw sender and receiver of numbered frames, for measuring what the bridge does. They live
// here so tests can run them in other namespaces as `bun impair-bridge.ts probe-send|probe-recv`.
//
// Probe frame: Ethernet header (broadcast, ethertype 0x88b5), magic, seq, ~seq, then bytes that
// are a function of (seq, offset) in the first 256 bytes and of the offset alone after that, so a
// receiver can find any flipped byte without the sender filling 9000 bytes per frame.

const PROBE_MAGIC = 0x494d5052; // "IMPR"
const PROBE_HEAD = 256;

function probeByte(seq: number, i: number): number {
  return i < PROBE_HEAD ? (seq * 131 + i * 7) & 0xff : (i * 13 + 5) & 0xff;
}

export interface ProbeSendArgs {
  dev: string;
  count: number;
  size: number;
  /** Mbit/s of frames (0 = as fast as the socket takes them). */
  rateMbit: number;
}

export function runProbeSend(a: ProbeSendArgs): { sent: number; ms: number } {
  const dev = lookupDevice(a.dev);
  const size = Math.max(60, Math.min(a.size, dev.mtu + 14));
  const sock = PacketSocket.open(dev, { batch: 32, maxFrame: dev.mtu + 14, rxRing: 0, sndBuf: 4 << 20 });
  const tail = new Uint8Array(Math.max(1024, size));
  for (let i = PROBE_HEAD; i < size; i++) tail[i] = probeByte(0, i);
  const tailAddr = addressOf(tail);
  const headLen = Math.min(size, PROBE_HEAD);
  const hv = sock.txView, hb = sock.txHeaders;
  const bytesPerMs = a.rateMbit * 125;
  const start = performance.now();
  let seq = 0;
  while (seq < a.count) {
    // Pace per millisecond: send what is due, then sleep; no busy wait on a 2-core box.
    const due = a.rateMbit > 0 ? Math.min(a.count, Math.floor(((performance.now() - start) * bytesPerMs) / size) + 1) : a.count;
    while (seq < due) {
      const slot = sock.txSlot();
      if (slot < 0) {
        if (sock.flush() === 0) Bun.sleepSync(0.2);
        continue;
      }
      const o = sock.txHeaderOffset(slot);
      hb.fill(0xff, o, o + 6);
      hb.set(dev.mac, o + 6);
      hv.setUint16(o + 12, 0x88b5);
      hv.setUint32(o + 14, PROBE_MAGIC);
      hv.setUint32(o + 18, seq);
      hv.setUint32(o + 22, ~seq >>> 0);
      for (let i = 26; i < headLen; i++) hb[o + i] = probeByte(seq, i);
      sock.txCommit(headLen, size > headLen ? tailAddr + headLen : 0, size - headLen);
      seq++;
    }
    while (sock.txPending() > 0) if (sock.flush() === 0) Bun.sleepSync(0.2);
    if (seq < a.count) Bun.sleepSync(1);
  }
  const ms = performance.now() - start;
  sock.close();
  return { sent: seq, ms };
}

export interface ProbeRecvArgs {
  dev: string;
  count: number;
  /** Stop this long after the last frame (once one arrived). */
  idleMs: number;
  /** Give up this long after start if nothing arrives. */
  maxMs: number;
  /** Check every byte (slower); otherwise only the magic and the seq pair. */
  verify: boolean;
}

export interface ProbeResult {
  /** Frames received, intact or not. */
  received: number;
  distinct: number;
  dups: number;
  corrupt: number;
  /** Intact first arrivals of a seq lower than one already seen. */
  late: number;
  /** Sum over late frames of (highest seq seen - seq): how far back they came. */
  lateDistance: number;
  /** Seqs never received intact. */
  missing: number;
  /** Longest run of missing seqs: first seq and length. */
  longestGap: { from: number; len: number };
  bytes: number;
  /** ms between the first and the last frame. */
  spanMs: number;
  kernelDrops: number;
}

export function runProbeRecv(a: ProbeRecvArgs, onReady?: () => void): ProbeResult {
  const dev = lookupDevice(a.dev);
  const sock = PacketSocket.open(dev, { batch: 64, maxFrame: dev.mtu + 18, rxRing: 16 << 20, sndBuf: 0 });
  const seen = new Uint8Array(a.count);
  const r: ProbeResult = {
    received: 0, distinct: 0, dups: 0, corrupt: 0, late: 0, lateDistance: 0, missing: 0,
    longestGap: { from: 0, len: 0 }, bytes: 0, spanMs: 0, kernelDrops: 0,
  };
  const poller = new Poller(1);
  poller.set(0, sock.fd, POLLIN);
  const rx = sock.rx, v = sock.rxView;
  let maxSeq = -1, first = 0, last = 0;
  const start = performance.now();
  onReady?.();
  for (;;) {
    const n = sock.recv();
    const now = performance.now();
    for (let i = 0; i < n; i++) {
      const o = sock.rxOffset(i), len = sock.rxLength(i);
      // Every 0x88b5 frame on this link is a probe: a bad magic is a corrupted one.
      if (r.received++ === 0) first = now;
      last = now;
      r.bytes += len;
      const seq = len >= 26 ? v.getUint32(o + 18) : -1;
      let ok = len >= 26 && v.getUint32(o + 14) === PROBE_MAGIC && seq === ~v.getUint32(o + 22) >>> 0 && seq < a.count;
      if (ok && a.verify) {
        for (let k = 26; k < len; k++) {
          if (rx[o + k] !== probeByte(seq, k)) {
            ok = false;
            break;
          }
        }
      }
      if (!ok) {
        r.corrupt++;
        continue;
      }
      if (seen[seq]) {
        r.dups++;
        continue;
      }
      seen[seq] = 1;
      r.distinct++;
      if (seq < maxSeq) {
        r.late++;
        r.lateDistance += maxSeq - seq;
      } else maxSeq = seq;
    }
    if (n > 0) continue;
    if (r.distinct === a.count) break;
    const idle = r.received > 0 ? last + a.idleMs - now : start + a.maxMs - now;
    if (idle <= 0) break;
    if (poller.wait(Math.min(50, Math.ceil(idle))) > 0 && (poller.revents(0) & POLLERR) !== 0) sock.takeError();
  }
  r.kernelDrops = sock.kernelDrops();
  sock.close();
  r.spanMs = last - first;
  let run = 0;
  for (let s = 0; s <= a.count; s++) {
    if (s < a.count && !seen[s]) {
      r.missing++;
      run++;
    } else {
      if (run > r.longestGap.len) r.longestGap = { from: s - run, len: run };
      run = 0;
    }
  }
  return r;
}

function probeMain(mode: string, argv: string[]): void {
  const o: Record<string, string> = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i]!.startsWith("--") || argv[i + 1] === undefined) throw new Error(`bad argument ${argv[i]}`);
    o[argv[i]!.slice(2)] = argv[i + 1]!;
  }
  if (!o.dev) throw new Error("--dev DEV is required");
  const count = num("count", o.count ?? "1000", 1, 1e9);
  if (mode === "probe-send") {
    const res = runProbeSend({ dev: o.dev, count, size: num("size", o.size ?? "1000", 60, 65536), rateMbit: num("rate", o.rate ?? "0", 0, 1e6) });
    process.stdout.write(JSON.stringify(res) + "\n");
  } else {
    const res = runProbeRecv(
      { dev: o.dev, count, idleMs: num("idle", o.idle ?? "500", 1, 1e7), maxMs: num("max", o.max ?? "10000", 1, 1e7), verify: (o.verify ?? "1") !== "0" },
      () => process.stdout.write("ready\n"),
    );
    process.stdout.write(JSON.stringify(res) + "\n");
  }
}

// ------------------------------------------------------------------ test helper

const SELF = import.meta.path;

/** Command that runs this file with the current Bun: [bun, path, ...args]. */
export function bridgeCommand(args: string[]): string[] {
  return [process.execPath, SELF, ...args];
}

type Child = Bun.Subprocess<"ignore", "pipe", "pipe">;

/** Collects a child's stdout in the background, so it never blocks on a full pipe. */
class ChildOutput {
  text = "";
  private closed = false;
  private wake: (() => void) | null = null;
  readonly done: Promise<void>;

  constructor(private readonly p: Child) {
    this.done = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of p.stdout) {
        this.text += dec.decode(chunk, { stream: true });
        this.wake?.();
      }
      this.closed = true;
      this.wake?.();
    })();
  }

  /** Waits for a line equal to `line`; throws with the child's stderr if it exits first. */
  async waitLine(line: string, timeoutMs: number, what: string): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (!this.text.split("\n").includes(line)) {
      if (this.closed || Date.now() > until) {
        this.p.kill("SIGKILL");
        await this.p.exited;
        const err = await new Response(this.p.stderr).text();
        throw new Error(`${what}: no "${line}" (exit ${this.p.exitCode ?? this.p.signalCode}): ${err.trim()}`);
      }
      await new Promise<void>((r) => {
        this.wake = r;
        setTimeout(r, 50);
      });
    }
  }

  /** The last non-empty line once the child has exited; throws on a non-zero exit. */
  async lastLine(what: string): Promise<string> {
    const code = await this.p.exited;
    await this.done;
    if (code !== 0) throw new Error(`${what} exited with ${code}: ${(await new Response(this.p.stderr).text()).trim()}`);
    return this.text.trim().split("\n").pop() ?? "";
  }
}

/** Runs the bridge in topo.nsM between midA[link] and midB[link]; stop() returns its counters. */
export async function startBridge(
  topo: Topology,
  link: number,
  opts: BridgeOptions,
): Promise<{ stop(): Promise<BridgeStats> }> {
  const a = topo.midA[link], b = topo.midB[link];
  if (!topo.nsM || !a || !b) throw new Error(`startBridge: link ${link} of topology ${topo.id} has no middle namespace`);
  const statsFile = `/tmp/impair-bridge-${topo.id}-${link}-${process.pid}-${Date.now()}.json`;
  const p = topo.spawn(topo.nsM, bridgeCommand(["--a", a, "--b", b, ...bridgeArgs(opts), "--stats", statsFile]), {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const out = new ChildOutput(p);
  await out.waitLine("ready", 10000, "impair-bridge");
  let stopped: Promise<BridgeStats> | null = null;
  return {
    stop() {
      stopped ??= (async () => {
        p.kill("SIGTERM");
        const code = await p.exited;
        await out.done;
        const file = Bun.file(statsFile);
        if (code !== 0 || !(await file.exists())) {
          const err = await new Response(p.stderr).text();
          throw new Error(`impair-bridge exited with ${code}: ${err.trim()}`);
        }
        const stats = (await file.json()) as BridgeStats;
        await file.unlink();
        return stats;
      })();
      return stopped;
    },
  };
}

export interface ProbeRun {
  /** Sender side: namespace and device. */
  fromNs: string;
  fromDev: string;
  toNs: string;
  toDev: string;
  count: number;
  size: number;
  rateMbit: number;
  verify?: boolean;
  idleMs?: number;
  /** Called once the receiver is ready, before the sender starts (e.g. to start a bridge). */
  beforeSend?: () => Promise<void>;
}

/** Sends `count` numbered frames from one namespace and counts what arrives in the other. */
export async function runProbe(
  topo: Topology,
  r: ProbeRun,
): Promise<{ send: { sent: number; ms: number }; recv: ProbeResult }> {
  const rx = topo.spawn(
    r.toNs,
    bridgeCommand(["probe-recv", "--dev", r.toDev, "--count", String(r.count), "--idle", String(r.idleMs ?? 400),
      "--max", "20000", "--verify", r.verify === false ? "0" : "1"]),
    { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
  );
  const rxOut = new ChildOutput(rx);
  await rxOut.waitLine("ready", 10000, "probe-recv");
  await r.beforeSend?.();
  const tx = await topo.exec(r.fromNs, bridgeCommand(["probe-send", "--dev", r.fromDev, "--count", String(r.count),
    "--size", String(r.size), "--rate", String(r.rateMbit)]));
  if (tx.code !== 0) {
    rx.kill("SIGKILL");
    throw new Error(`probe-send exited with ${tx.code}: ${tx.stderr.trim()}`);
  }
  const send = JSON.parse(tx.stdout.trim().split("\n").pop()!) as { sent: number; ms: number };
  const recv = JSON.parse(await rxOut.lastLine("probe-recv")) as ProbeResult;
  return { send, recv };
}

if (import.meta.main) {
  const mode = process.argv[2];
  if (mode === "probe-send" || mode === "probe-recv") {
    try {
      probeMain(mode, process.argv.slice(3));
      process.exit(0);
    } catch (e) {
      process.stderr.write(`impair-bridge ${mode}: ${(e as Error).message}\n`);
      process.exit(1);
    }
  }
  let args: ParsedArgs;
  try {
    args = parseBridgeArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`impair-bridge: ${(e as Error).message}\n`);
    process.exit(2);
  }
  try {
    await runBridge(args);
    process.exit(0);
  } catch (e) {
    process.stderr.write(`impair-bridge: ${(e as Error).message}\n`);
    process.exit(1);
  }
}
