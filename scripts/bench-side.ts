// Runs one side of a benchmark transfer (a command or a short pipeline) in a namespace and measures
// what that side cost: CPU seconds and peak RSS, from wait4 rusage, so nothing is sampled.
//
// Each side runs as `ip netns exec NS setsid sh -c SCRIPT`: `ip netns exec` and setsid both exec
// (no fork), so the spawned pid is the shell, and a process group of its own lets a timeout or
// Ctrl-C kill the whole pipeline. With GNU time each pipeline member is measured on its own
// (CPU summed, peak RSS summed: the members run at the same time). Without it, CPU comes from the
// shell's own wait4 rusage, which includes every member it reaped, and peak RSS from polling the
// members' VmHWM in /proc: the shell's ru_maxrss is useless, as Bun spawns it with vfork and the
// kernel carries Bun's own high-water mark across the exec.

import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";

export const GNU_TIME = "/usr/bin/time";

export function haveGnuTime(): boolean {
  if (!existsSync(GNU_TIME)) return false;
  const r = Bun.spawnSync([GNU_TIME, "-f", "L2B %e %U %S %M %x", "true"], { stdout: "ignore", stderr: "pipe" });
  return r.exitCode === 0 && /L2B [\d.]+ [\d.]+ [\d.]+ \d+ 0/.test(r.stderr.toString());
}

export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", "'\\''")}'`;
}

export interface SideSpec {
  ns: string;
  /** argv of each pipeline member, left to right */
  pipeline: string[][];
  stdin?: string;
  stdout?: string;
  /** prefix for the side's scratch files (exit codes, GNU time output) */
  scratch: string;
  gnuTime: boolean;
}

export interface SideResult {
  /** 0 when every member exited 0, else the first non-zero status (137 when killed) */
  code: number;
  codes: number[];
  /** ms from the moment the sender was started (see Run) to this side's exit */
  endMs: number;
  cpuS: number;
  /** sum of the members' peak RSS */
  rssKiB: number;
  stderr: string;
  method: "gnu-time" | "wait4";
}

// Sides still running: killed on timeout, failure, Ctrl-C and exit.
const live = new Set<Side>();

export function killAllGroups(): void {
  for (const side of live) side.kill();
}

// The leader first: before its setsid (still `ip netns exec`) the group does not exist yet, and
// once it is dead it can start nothing more; then its group, which outlives it.
function killGroup(pid: number): void {
  for (const target of [pid, -pid]) {
    try {
      process.kill(target, "SIGKILL");
    } catch {}
  }
}

export class Side {
  readonly proc: Bun.Subprocess<"ignore", "ignore", "pipe">;
  private readonly stderrText: Promise<string>;
  private readonly exited: Promise<number>;
  private readonly hwm: HwmPoller | null;

  constructor(private readonly spec: SideSpec) {
    const members = spec.pipeline.map((argv, i) => {
      const timed = spec.gnuTime ? [GNU_TIME, "-f", "L2B %e %U %S %M %x", "-o", `${spec.scratch}.time${i}`, ...argv] : argv;
      // Redirections on the braces, not after the pipeline: there they would bind to its last member.
      const redir =
        (i === 0 ? ` < ${shellQuote(spec.stdin ?? "/dev/null")}` : "") +
        (i === spec.pipeline.length - 1 ? ` > ${shellQuote(spec.stdout ?? "/dev/null")}` : "");
      return `{ ${timed.map(shellQuote).join(" ")}; echo $? > ${shellQuote(`${spec.scratch}.rc${i}`)}; }${redir}`;
    });
    const script = members.join(" | ");
    // No env changes: the child gets this process's environment.
    this.proc = Bun.spawn(["ip", "netns", "exec", spec.ns, "setsid", "sh", "-c", script], {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
    });

    live.add(this);
    this.hwm = spec.gnuTime ? null : new HwmPoller(this.proc.pid);
    this.stderrText = new Response(this.proc.stderr).text();
    this.exited = this.proc.exited.then((c) => {
      live.delete(this);
      return c;
    });
  }

  get pid(): number {
    return this.proc.pid;
  }

  get done(): boolean {
    return this.proc.exitCode !== null || this.proc.signalCode !== null;
  }

  /** Never after the exit: the pid may belong to someone else by then. */
  kill(): void {
    if (!this.done) killGroup(this.proc.pid);
  }

  /** Waits for the exit; t0 is the sender's start on the performance.now() clock. */
  async wait(t0: number): Promise<SideResult> {
    await this.exited;
    const endMs = performance.now() - t0;
    const polledKiB = this.hwm?.stop() ?? 0;
    const stderr = await this.stderrText;
    const n = this.spec.pipeline.length;
    const codes: number[] = [];
    let cpuS = 0;
    let rssKiB = 0;
    for (let i = 0; i < n; i++) {
      const rcFile = `${this.spec.scratch}.rc${i}`;
      codes.push(existsSync(rcFile) ? Number(readFileSync(rcFile, "utf8").trim()) : 137);
      rmSync(rcFile, { force: true });
    }
    let method: SideResult["method"] = "wait4";
    if (this.spec.gnuTime) {
      let all = true;
      let cpu = 0;
      let rss = 0;
      for (let i = 0; i < n; i++) {
        const f = `${this.spec.scratch}.time${i}`;
        const line = existsSync(f) ? readFileSync(f, "utf8").split("\n").find((l) => l.startsWith("L2B ")) : undefined;
        rmSync(f, { force: true });
        const m = line && /^L2B ([\d.]+) ([\d.]+) ([\d.]+) (\d+)/.exec(line);
        if (!m) {
          all = false;
          continue;
        }
        cpu += Number(m[2]) + Number(m[3]);
        rss += Number(m[4]);
      }
      if (all) {
        cpuS = cpu;
        rssKiB = rss;
        method = "gnu-time";
      }
    }
    if (method === "wait4") {
      // Also for killed members, which leave no GNU time line.
      const ru = this.proc.resourceUsage();
      if (ru) cpuS = Number(ru.cpuTime.total) / 1e6;
      rssKiB = polledKiB;
    }
    const bad = codes.find((c) => c !== 0);
    return { code: bad ?? 0, codes, endMs, cpuS, rssKiB, stderr, method };
  }
}

/** Resolves once `ready()` holds, or rejects when the side exits first or timeoutMs passes. */
export async function awaitReady(side: Side, what: string, ready: () => boolean, timeoutMs = 10_000): Promise<void> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    if (side.done) throw new Error(`${what} exited before it was ready`);
    try {
      if (ready()) return;
    } catch {
      // /proc/PID/net appears a moment after the spawn
    }
    if (performance.now() > until) throw new Error(`${what} not ready after ${timeoutMs} ms`);
    await Bun.sleep(2);
  }
}

/** Packet sockets for ethertype 0x88b5 open in the network namespace of pid. */
export function packetSockets(pid: number): number {
  return readFileSync(`/proc/${pid}/net/packet`, "utf8")
    .split("\n")
    .slice(1)
    .filter((l) => /\s88b5\s/i.test(l)).length;
}

/** A TCP socket listening on port in the network namespace of pid. */
export function tcpListening(pid: number, port: number): boolean {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  return readFileSync(`/proc/${pid}/net/tcp`, "utf8")
    .split("\n")
    .some((l) => {
      const f = l.trim().split(/\s+/);
      return f[1]?.endsWith(`:${hex}`) && f[3] === "0A";
    });
}

// Not pipeline members: the shells, and `ip`/setsid before they exec (vfork children of Bun, whose
// VmHWM is Bun's until the exec).
const NOT_MEMBERS = new Set(["sh", "dash", "bash", "ip", "setsid", "time", "bun"]);

/** Peak RSS (VmHWM, per process, summed) of the members of a process group, sampled every 50 ms:
 * a peak reached in a member's last 50 ms can be missed. */
class HwmPoller {
  private readonly peaks = new Map<string, number>();
  private readonly timer: Timer;

  constructor(private readonly pgid: number) {
    this.timer = setInterval(() => this.scan(), 50);
  }

  private scan(): void {
    let pids: string[];
    try {
      pids = readdirSync("/proc").filter((d) => /^\d+$/.test(d));
    } catch {
      return;
    }
    for (const pid of pids) {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        const close = stat.lastIndexOf(")");
        const comm = stat.slice(stat.indexOf("(") + 1, close);
        // after "comm) ": state ppid pgrp ...
        if (Number(stat.slice(close + 2).split(" ")[2]) !== this.pgid || NOT_MEMBERS.has(comm)) continue;
        const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
        if (!m) continue;
        const key = `${pid}:${comm}`;
        this.peaks.set(key, Math.max(this.peaks.get(key) ?? 0, Number(m[1])));
      } catch {
        // exited meanwhile
      }
    }
  }

  /** Sum of the peaks seen, KiB. */
  stop(): number {
    clearInterval(this.timer);
    let sum = 0;
    for (const v of this.peaks.values()) sum += v;
    return sum;
  }
}
