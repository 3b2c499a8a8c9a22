// What a person or a script learns about a run: the -p progress line, the -v summary and the
// --stats-json file. Nothing here runs unless asked for.

import { appendFileSync, writeFileSync } from "node:fs";
import type { Options } from "../cli";
import { usageError } from "../errors";

export interface LinkStats {
  device: string;
  state?: string;
  mtu?: number;
  framesSent?: number;
  bytesSent?: number;
  framesRetransmitted?: number;
  bytesRetransmitted?: number;
  framesLost?: number;
  acksReceived?: number;
  framesReceived?: number;
  bytesReceived?: number;
  duplicates?: number;
  acksSent?: number;
  badFrames: number;
  foreignFrames: number;
  timesDown?: number;
  kernelDrops?: number;
  srttMs?: number | null;
  /** Sender: the kernel send buffer granted now (sized to the link's rate). */
  sendQueueBytes?: number;
  /** Why a listed device carried no data; absent when it carried some. */
  unused?: string;
}

export interface RunStats {
  role: "send" | "receive";
  elapsedMs: number;
  /** Original stream bytes: read from stdin (sender) or written to stdout (receiver). */
  inputBytes: number;
  /** Wire-stream bytes (records, compressed or not). */
  wireBytes: number;
  /** Sender: wire bytes the receiver has acknowledged, when the shell reports it. */
  ackedWireBytes?: number;
  compression?: {
    chunks: number; rawChunks: number; skippedChunks: number; rawBytes: number; encodedBytes: number; busyMs: number;
    /** Time the links had room but nothing to send while the compressors worked. */
    linksWaitedMs?: number;
    /** Time data waited in the send ring for the links (or the receiver's window). */
    linksBusyMs?: number;
    /** Compressed chunks per codec and level ("lz4", "zstd-3"). */
    codecs?: Record<string, { chunks: number; rawBytes: number; encodedBytes: number }>;
    /** The codec in use (at the end: the last one), how it was chosen, and how often auto changed it. */
    codec?: string;
    policy?: "auto" | "pinned";
    codecChanges?: number;
    /** auto's changes in order: when (ms since start-up), how far into stdin, to what. */
    codecTrace?: { ms: number; read: number; codec: string }[];
    /** Share of the run's time each side was the bottleneck (filled in by the report). */
    bottleneck?: { links: number; compressors: number };
  } | null;
  output?: { chunks: number; lz4Chunks: number; zstdChunks?: number; stallMs: number } | null;
  /** Receiver with -b: the tape buffer. */
  buffer?: { bytes: number; fillPct: number; filling: boolean; stalls: number; stalledMs: number } | null;
  links: LinkStats[];
  ok?: boolean;
  error?: string | null;
}

const MB = 1e6;

function rate(bytes: number, ms: number): string {
  return ms > 0 ? `${((bytes / MB) / (ms / 1000)).toFixed(1)} MB/s` : "-";
}

function size(bytes: number): string {
  if (bytes >= 1 << 30) return `${(bytes / (1 << 30)).toFixed(2)} GiB`;
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
  if (bytes >= 1 << 10) return `${(bytes / (1 << 10)).toFixed(1)} KiB`;
  return `${bytes} B`;
}

/** Stream bytes that have gone out: what the receiver wrote, or on the sender the share of what it
 * read that is on the wire (the sender reads up to a ring ahead, so stdin alone would show 100%
 * while most of the stream still waits to be sent). */
export function progressBytes(s: RunStats): number {
  if (s.role === "receive") return s.inputBytes;
  if (s.wireBytes <= 0) return 0;
  let sent = s.ackedWireBytes;
  if (sent === undefined) {
    sent = 0;
    for (const l of s.links) sent += Math.max(0, (l.bytesSent ?? 0) - (l.bytesRetransmitted ?? 0));
  }
  return Math.round(s.inputBytes * Math.min(1, sent / s.wireBytes));
}

export class Reporter {
  private lastProgress = -Infinity;
  private lastBytes = 0;
  private lastTime = 0;
  /** Last tick with nothing moved yet: rates and ETA count from here, not from the wait for the peer. */
  private idleUntil: number;
  private printed = false;
  private readonly tty: boolean;

  constructor(
    private readonly opts: Options,
    readonly role: "send" | "receive",
    private readonly started: number,
  ) {
    this.tty = Boolean(process.stderr.isTTY);
    this.lastTime = started;
    this.idleUntil = started;
    if (opts.statsJson) {
      // Found out now, not after hours of transfer: the file can be written.
      try {
        appendFileSync(opts.statsJson, "");
      } catch (e) {
        throw usageError(`--stats-json ${opts.statsJson}: cannot write it: ${(e as Error).message}`);
      }
    }
  }

  progress(now: number, stats: () => RunStats): void {
    if (!this.opts.progress) return;
    const every = this.tty ? 250 : 1000;
    if (now - this.lastProgress < every) return;
    this.lastProgress = now;
    const s = stats();
    const done = progressBytes(s);
    if (done === 0) {
      this.idleUntil = now;
      this.lastTime = now;
      if (!s.links.some((l) => l.state === "up")) {
        // A log file gets no line per second of waiting; a terminal shows that it waits.
        if (this.tty) this.write(`l2pipe ${this.role}: waiting for the ${this.role === "send" ? "receiver" : "sender"} (${((now - this.started) / 1000).toFixed(0)} s)`);
        return;
      }
    }
    this.write(this.line(now, s, done));
  }

  private line(now: number, s: RunStats, done: number): string {
    const current = ((done - this.lastBytes) / MB) / Math.max(0.001, (now - this.lastTime) / 1000);
    this.lastBytes = done;
    this.lastTime = now;
    const active = now - this.idleUntil;
    const amount = size(done);
    const nowRate = `${current.toFixed(1)} MB/s now`;
    const avg = `${rate(done, active)} avg`;
    const wire = `wire ${size(s.role === "send" ? Math.round((done * s.wireBytes) / Math.max(1, s.inputBytes)) : s.wireBytes)}`;
    const ratio = s.inputBytes > 0 && s.wireBytes > 0 ? `ratio ${(s.wireBytes / s.inputBytes).toFixed(2)}` : "";
    const codec = s.compression?.codec ?? "";
    const sent = s.links.map((l) => l.bytesSent ?? l.bytesReceived ?? 0);
    const sum = sent.reduce((a, b) => a + b, 0);
    const shares = s.links.length > 1 && sum > 0
      ? s.links.map((l, i) => `${l.device} ${Math.round((100 * sent[i]!) / sum)}%`).join(" ")
      : "";
    let pct = "";
    let pctOf = "";
    let eta = "";
    const hint = this.opts.sizeHint;
    if (hint && hint > 0) {
      pct = `${Math.min(100, (100 * done) / hint).toFixed(1)}%`;
      pctOf = `${pct} of ${size(hint)}`;
      const perMs = done / Math.max(1, active);
      const etaS = perMs > 0 ? Math.max(0, hint - done) / perMs / 1000 : Infinity;
      eta = `ETA ${Number.isFinite(etaS) ? formatDuration(etaS) : "-"}`;
    }
    const b = s.buffer;
    const buffer = b ? `buffer ${b.fillPct.toFixed(0)}%${b.filling ? " (filling)" : ""}` : "";
    const build = (items: string[]) => `l2pipe ${this.role}: ${items.filter((x) => x).join(", ")}`;
    // A line wider than the terminal wraps, and \r then rewrites only its last row: on a
    // terminal the details go first, the percentage and ETA last.
    const width = this.tty ? (process.stderr.columns || 80) - 1 : Infinity;
    const choices = [
      build([amount, nowRate, avg, wire, ratio, codec, shares, buffer, pctOf, eta]),
      build([amount, nowRate, avg, wire, ratio, codec, buffer, pctOf, eta]),
      build([amount, nowRate, avg, buffer, pct, eta]),
    ];
    return choices.find((l) => l.length <= width) ?? choices.at(-1)!.slice(0, Math.max(0, width));
  }

  /** A line the user should see whatever the options: a link that carries less than it could. */
  warn(text: string): void {
    // A progress line on a terminal has no newline yet: end it first.
    if (this.tty && this.printed) process.stderr.write("\n");
    this.printed = false;
    process.stderr.write(`l2pipe: ${text}\n`);
  }

  private write(line: string): void {
    this.printed = true;
    process.stderr.write(this.tty ? `\r${line}\x1b[K` : `${line}\n`);
  }

  finish(stats: RunStats, ok: boolean, error: string | null = null): void {
    stats.ok = ok;
    stats.error = error;
    const c = stats.compression;
    if (c && stats.elapsedMs > 0) {
      const share = (ms: number | undefined) => Math.round((1000 * (ms ?? 0)) / stats.elapsedMs) / 1000;
      c.bottleneck = { links: share(c.linksBusyMs), compressors: share(c.linksWaitedMs) };
    }
    // A user who cabled two links and got the speed of one should hear which one and why. (A
    // failed run's own message names its cause.)
    if (ok) for (const l of stats.links) if (l.unused) this.warn(`${l.device} carried no data: ${l.unused}`);
    if (this.opts.progress) {
      // The last word of -p is where the stream ended, even for a run shorter than one tick.
      const done = ok ? stats.inputBytes : progressBytes(stats);
      if (done > 0 || stats.wireBytes > 0) this.write(this.line(performance.now(), stats, done));
      if (this.tty && this.printed) process.stderr.write("\n");
    }
    if (this.opts.verbose) process.stderr.write(summary(stats));
    if (this.opts.statsJson) {
      try {
        writeFileSync(this.opts.statsJson, JSON.stringify(stats, null, 2) + "\n");
      } catch (e) {
        process.stderr.write(`l2pipe: cannot write --stats-json ${this.opts.statsJson}: ${(e as Error).message}\n`);
      }
    }
  }
}

/** 75 s -> "1:15", 4000 s -> "1:06:40", 9 s -> "9 s" */
export function formatDuration(secs: number): string {
  const t = Math.round(secs);
  if (t < 60) return `${t} s`;
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const ss = String(t % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

export function summary(s: RunStats): string {
  const lines: string[] = [];
  const secs = s.elapsedMs / 1000;
  const verb = s.role === "send" ? "read from stdin" : "written to stdout";
  // Exact bytes, not only a rounded size: after a failure this is how far the stream got.
  const amount = s.inputBytes >= 1024 ? `${s.inputBytes} bytes (${size(s.inputBytes)})` : size(s.inputBytes);
  lines.push(`l2pipe ${s.role}: ${s.ok ? "done" : "FAILED"} in ${secs.toFixed(2)} s: ${amount} ${verb} (${rate(s.inputBytes, s.elapsedMs)}), ${size(s.wireBytes)} on the wire`);
  const c = s.compression;
  if (c && c.chunks > 0) {
    lines.push(
      `  compression: ratio ${(c.encodedBytes / Math.max(1, c.rawBytes)).toFixed(3)}, ${c.chunks} chunks, ${c.rawChunks} sent raw (${c.skippedChunks} not tried), compressors busy ${(c.busyMs / 1000).toFixed(2)} s, links waited ${((c.linksWaitedMs ?? 0) / 1000).toFixed(2)} s for them`,
    );
    lines.push(`  codecs: ${codecLine(c)}`);
  }
  const o = s.output;
  // stallMs is the time the output stage had nothing to write (starved by the network).
  const b = s.buffer;
  if (b) {
    lines.push(`  buffer: ${size(b.bytes)}, output paused ${b.stalls} time${b.stalls === 1 ? "" : "s"} after running dry, ${(b.stalledMs / 1000).toFixed(2)} s in all`);
  }
  if (o) lines.push(`  output: ${o.chunks} chunks (${o.lz4Chunks} lz4, ${o.zstdChunks ?? 0} zstd), waited ${(o.stallMs / 1000).toFixed(2)} s for the network`);
  for (const l of s.links) {
    const parts = [`  ${l.device}:`];
    if (l.state) parts.push(l.state);
    if (l.mtu) parts.push(`mtu ${l.mtu}`);
    if (l.framesSent !== undefined) parts.push(`${l.framesSent} frames sent (${size(l.bytesSent ?? 0)})`, `${l.framesRetransmitted} resent`, `${l.framesLost} lost`);
    if (l.framesReceived !== undefined) parts.push(`${l.framesReceived} frames received (${size(l.bytesReceived ?? 0)})`, `${l.duplicates} duplicates`, `${l.acksSent} acks sent`);
    parts.push(`${l.badFrames} bad`, `${l.foreignFrames} foreign`);
    if (l.kernelDrops !== undefined) parts.push(`${l.kernelDrops} dropped by kernel`);
    if (l.timesDown) parts.push(`down ${l.timesDown}x`);
    if (l.srttMs !== undefined && l.srttMs !== null) parts.push(`rtt ${l.srttMs.toFixed(2)} ms`);
    if (l.sendQueueBytes !== undefined) parts.push(`send queue ${size(l.sendQueueBytes)}`);
    lines.push(parts.join(" "));
  }
  if (s.error) lines.push(`  error: ${s.error}`);
  return lines.join("\n") + "\n";
}

/** "lz4 12 chunks 3.0 MiB -> 1.5 MiB, zstd-3 ...; zstd-3 at the end (auto, 2 changes); bottleneck: links 80 %, compressors 5 % of the time" */
function codecLine(c: NonNullable<RunStats["compression"]>): string {
  const per = Object.entries(c.codecs ?? {}).map(([name, k]) =>
    `${name} ${k.chunks} chunks ${size(k.rawBytes)} -> ${size(k.encodedBytes)}`);
  const parts = [per.length ? per.join(", ") : "none compressed"];
  if (c.codec) parts.push(`${c.codec} at the end (${c.policy === "auto" ? `auto, ${c.codecChanges ?? 0} changes` : "pinned"})`);
  const b = c.bottleneck;
  if (b) parts.push(`bottleneck: links ${Math.round(b.links * 100)} %, compressors ${Math.round(b.compressors * 100)} % of the time`);
  return parts.join("; ");
}
