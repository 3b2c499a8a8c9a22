// Small helpers shared by the end-to-end tests: input files, watching a running transfer,
// and reading numbers out of the -v summary.

import { readdirSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { makeRandomFile } from "./netns";

/** A random file of `bytes` in `dir`. */
export async function randomFile(dir: string, name: string, bytes: number): Promise<string> {
  const path = `${dir}/${name}`;
  await makeRandomFile(path, bytes);
  return path;
}

/** The receiver's output file of a running transfer() (its name is transfer's choice). */
export function outputOf(input: string): string | null {
  const f = readdirSync(dirname(input)).find((n) => n.startsWith(`${basename(input)}.out.`) && !n.endsWith(".rc"));
  return f ? join(dirname(input), f) : null;
}

export function sizeOf(path: string | null): number {
  if (!path) return 0;
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

export const running = (p: Bun.Subprocess) => p.exitCode === null && p.signalCode === null;

export async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!(await cond())) {
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(5);
  }
}

/** A per-link counter from a -v summary line such as "  eth0: ... 12 bad ...". */
export function vcount(stderr: string, dev: string, field: string): number {
  const m = new RegExp(`^  ${dev}:.*?(\\d+) ${field}\\b`, "m").exec(stderr);
  if (!m) throw new Error(`no "${field}" for ${dev} in:\n${stderr}`);
  return Number(m[1]);
}

/** Writes a script that copies stdin to stdout in 64 KiB pieces at `argv[2]` bytes per second
 * (it sleeps to hold the rate): a reader slower than the links, put after a receiver. */
export function writeSlowReader(path: string): string {
  writeFileSync(
    path,
    `const fs = require("node:fs"); const rate = Number(process.argv[2]); const buf = Buffer.alloc(65536);
     const t0 = performance.now(); let n = 0;
     for (;;) { const r = fs.readSync(0, buf, 0, buf.length, null); if (r <= 0) break;
       for (let o = 0; o < r; ) o += fs.writeSync(1, buf, o, r - o);
       n += r; const d = t0 + (n / rate) * 1000 - performance.now(); if (d > 0) Bun.sleepSync(d); }\n`,
  );
  return path;
}
