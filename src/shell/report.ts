// What a person or a script learns about a run: the -p progress line, the -v summary and the
// --stats-json file. Nothing here runs unless asked for.

import { writeFileSync } from "node:fs";
import type { Options } from "../cli";

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
}

export interface RunStats {
  role: "send" | "receive";
  elapsedMs: number;
  /** Original stream bytes: read from stdin (sender) or written to stdout (receiver). */
  inputBytes: number;
  /** Wire-stream bytes (records, compressed or not). */
  wireBytes: number;
  compression?: { chunks: number; rawChunks: number; skippedChunks: number; rawBytes: number; encodedBytes: number; busyMs: number } | null;
  output?: { chunks: number; lz4Chunks: number; stallMs: number } | null;
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

export class Reporter {
  private lastProgress = 0;
  private lastBytes = 0;
  private lastTime = 0;
  private readonly tty: boolean;

  constructor(
    private readonly opts: Options,
    readonly role: "send" | "receive",
    private readonly started: number,
  ) {
    this.tty = Boolean(process.stderr.isTTY);
    this.lastTime = started;
  }

  progress(now: number, stats: () => RunStats): void {
    if (!this.opts.progress) return;
    const every = this.tty ? 250 : 1000;
    if (now - this.lastProgress < every) return;
    this.lastProgress = now;
    const s = stats();
    const current = ((s.inputBytes - this.lastBytes) / MB) / Math.max(0.001, (now - this.lastTime) / 1000);
    this.lastBytes = s.inputBytes;
    this.lastTime = now;
    const parts = [
      `${size(s.inputBytes)}`,
      `${current.toFixed(1)} MB/s now`,
      `${rate(s.inputBytes, now - this.started)} avg`,
      `wire ${size(s.wireBytes)}`,
    ];
    if (s.inputBytes > 0 && s.wireBytes > 0) parts.push(`ratio ${(s.wireBytes / s.inputBytes).toFixed(2)}`);
    const sent = s.links.map((l) => l.bytesSent ?? l.bytesReceived ?? 0);
    const sum = sent.reduce((a, b) => a + b, 0);
    if (s.links.length > 1 && sum > 0) {
      parts.push(s.links.map((l, i) => `${l.device} ${Math.round((100 * sent[i]) / sum)}%`).join(" "));
    }
    const hint = this.opts.sizeHint;
    if (hint && hint > 0) {
      const pct = Math.min(100, (100 * s.inputBytes) / hint);
      const avg = s.inputBytes / Math.max(1, now - this.started);
      const etaS = avg > 0 ? (hint - s.inputBytes) / avg / 1000 : Infinity;
      parts.push(`${pct.toFixed(1)}%`, `ETA ${Number.isFinite(etaS) ? Math.max(0, etaS).toFixed(0) + " s" : "-"}`);
    }
    const line = `l2pipe ${this.role}: ${parts.join(", ")}`;
    process.stderr.write(this.tty ? `\r${line}\x1b[K` : `${line}\n`);
  }

  finish(stats: RunStats, ok: boolean, error: string | null = null): void {
    stats.ok = ok;
    stats.error = error;
    if (this.opts.progress && this.tty) process.stderr.write("\n");
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

export function summary(s: RunStats): string {
  const lines: string[] = [];
  const secs = s.elapsedMs / 1000;
  const verb = s.role === "send" ? "read from stdin" : "written to stdout";
  lines.push(`l2pipe ${s.role}: ${s.ok ? "done" : "FAILED"} in ${secs.toFixed(2)} s: ${size(s.inputBytes)} ${verb} (${rate(s.inputBytes, s.elapsedMs)}), ${size(s.wireBytes)} on the wire`);
  const c = s.compression;
  if (c && c.chunks > 0) {
    lines.push(
      `  compression: ratio ${(c.encodedBytes / Math.max(1, c.rawBytes)).toFixed(3)}, ${c.chunks} chunks, ${c.rawChunks} sent raw (${c.skippedChunks} not tried), compressors busy ${(c.busyMs / 1000).toFixed(2)} s`,
    );
  }
  const o = s.output;
  if (o) lines.push(`  output: ${o.chunks} chunks (${o.lz4Chunks} lz4), stdout blocked ${(o.stallMs / 1000).toFixed(2)} s`);
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
    lines.push(parts.join(" "));
  }
  if (s.error) lines.push(`  error: ${s.error}`);
  return lines.join("\n") + "\n";
}
