// Runs the compiled binary as receiver and sender in a topology's namespaces and reports
// what each side said, its exit code, and the sha256 of input and output.

import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sha256File, type Topology } from "./netns";

export const BINARY = new URL("../../dist/l2pipe", import.meta.url).pathname;

export function requireBinary(): void {
  if (!existsSync(BINARY)) throw new Error(`${BINARY} is missing: run 'bun run build' first`);
}

export interface Side {
  code: number;
  stderr: string;
  ms: number;
  /** performance.now() when the process exited. */
  endedAt: number;
}

export interface TransferResult {
  sender: Side;
  receiver: Side;
  inSha: string;
  outSha: string;
  outPath: string;
  /** From the sender's start to the receiver's exit. */
  ms: number;
}

export interface TransferOptions {
  input: string;
  senderArgs?: string[];
  receiverArgs?: string[];
  senderDevs?: string[];
  receiverDevs?: string[];
  /** Shell text the receiver's stdout is piped into (default: a file). */
  receiverPipe?: string;
  timeoutMs?: number;
  /** Start the sender this long after the receiver (negative: sender first). */
  senderDelayMs?: number;
  env?: Record<string, string>;
  /** Extra environment for one side only. */
  senderEnv?: Record<string, string>;
  receiverEnv?: Record<string, string>;
  /** Command words put before the receiver's or sender's binary (e.g. strace ...). */
  receiverWrap?: string[];
  senderWrap?: string[];
  /** Called once both are running. */
  during?: (ctx: { sender: Bun.Subprocess; receiver: Bun.Subprocess }) => Promise<void> | void;
}

export function shellQuote(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`;
}

export function scratchDir(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "l2pipe-test-"));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Its exit time, taken when it happens (not when someone gets round to awaiting it). */
function endTime(p: Bun.Subprocess): Promise<number> {
  return p.exited.then(() => performance.now());
}

async function waitSide(p: Bun.Subprocess, ended: Promise<number>, started: number, deadline: number): Promise<Side> {
  const timer = setTimeout(() => p.kill("SIGKILL"), Math.max(0, deadline - performance.now()));
  const code = await p.exited;
  clearTimeout(timer);
  const endedAt = await ended;
  const stderr = p.stderr instanceof ReadableStream ? await new Response(p.stderr).text() : "";
  return { code, stderr, ms: endedAt - started, endedAt };
}

export async function transfer(topo: Topology, opts: TransferOptions): Promise<TransferResult> {
  requireBinary();
  const outPath = `${opts.input}.out.${Math.random().toString(36).slice(2, 8)}`;
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const rDevs = opts.receiverDevs ?? topo.devsB;
  const sDevs = opts.senderDevs ?? topo.devsA;
  const rCmd = [...(opts.receiverWrap ?? []), BINARY, "-r", ...(opts.receiverArgs ?? []), ...rDevs].map(shellQuote).join(" ");
  const sCmd = [...(opts.senderWrap ?? []), BINARY, "-s", ...(opts.senderArgs ?? []), ...sDevs].map(shellQuote).join(" ");
  const sink = opts.receiverPipe ? `| ${opts.receiverPipe} > ${shellQuote(outPath)}` : `> ${shellQuote(outPath)}`;
  const env = { ...process.env, ...opts.env };
  const start = (ns: string, script: string, extra?: Record<string, string>) =>
    topo.spawn(ns, ["sh", "-c", script], { stdout: "ignore", stderr: "pipe", stdin: "ignore", env: { ...env, ...extra } });

  const delay = opts.senderDelayMs ?? 100;
  const t0 = performance.now();
  const deadline = t0 + timeoutMs;
  let receiver: Bun.Subprocess;
  let sender: Bun.Subprocess;
  // With a pipe after the receiver, $? would be the pipe's; set -o pipefail is not in dash, so
  // the receiver's own status is passed out through a file descriptor.
  const rScript = opts.receiverPipe
    ? `{ ${rCmd} 2>&3; echo $? > ${shellQuote(outPath + ".rc")}; } 3>&2 ${sink}; exit $(cat ${shellQuote(outPath + ".rc")})`
    : `exec ${rCmd} ${sink}`;
  const sScript = `exec ${sCmd} < ${shellQuote(opts.input)}`;
  if (delay >= 0) {
    receiver = start(topo.nsB, rScript, opts.receiverEnv);
    await Bun.sleep(delay);
    sender = start(topo.nsA, sScript, opts.senderEnv);
  } else {
    sender = start(topo.nsA, sScript, opts.senderEnv);
    await Bun.sleep(-delay);
    receiver = start(topo.nsB, rScript, opts.receiverEnv);
  }
  const sStart = performance.now();
  const sEnded = endTime(sender);
  const rEnded = endTime(receiver);
  if (opts.during) await opts.during({ sender, receiver });
  const [s, r] = await Promise.all([waitSide(sender, sEnded, sStart, deadline), waitSide(receiver, rEnded, sStart, deadline)]);
  const [inSha, outSha] = await Promise.all([sha256File(opts.input), sha256File(outPath)]);
  rmSync(outPath + ".rc", { force: true });
  return { sender: s, receiver: r, inSha, outSha, outPath, ms: Math.max(s.ms, r.ms) };
}

/** The common verdict: both exit 0, nothing on stderr unless asked for, output equals input. */
export function describe(r: TransferResult): string {
  return `sender exit ${r.sender.code} (${r.sender.stderr.trim()}) receiver exit ${r.receiver.code} (${r.receiver.stderr.trim()}) sha ${r.inSha === r.outSha ? "equal" : "DIFFERENT"}`;
}
