// Test topologies of network namespaces joined by veth pairs, for end-to-end tests and benchmarks.
//
// Every name (namespaces and interfaces) carries a random per-topology id, so parallel runs never
// collide, and cleanup only ever deletes what this module created. Interfaces are created directly
// inside their namespaces: nothing is added to, or changed in, the root namespace.

import { createCipheriv, randomBytes } from "node:crypto";
import { closeSync, openSync, readSync, writeSync } from "node:fs";
import { constants as osConstants } from "node:os";
import { CLONE_NEWNET, describeErrno, errno, libc } from "../../ffi/libc";

export interface LinkSpec {
  /** MTU of every interface of the link (default 1500) */
  mtu?: number;
  /** htb rate on the egress of both endpoints (nsA and nsB side) */
  rateMbit?: number;
  /** route the link through nsM: A <-> midA | midB <-> B; nothing forwards between midA and midB
   * unless the test runs a bridge process in nsM */
  middle?: boolean;
}

export interface ExecOptions {
  stdin?: string | Uint8Array | Blob;
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** kill (SIGKILL) after this long; the result then has code 137 */
  timeoutMs?: number;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Topology {
  id: string;
  nsA: string;
  nsB: string;
  nsM?: string;
  devsA: string[];
  devsB: string[];
  midA: (string | undefined)[];
  midB: (string | undefined)[];
  /** Runs `ip netns exec ns ...cmd` to completion; code is 128+signal if it was killed. */
  exec(ns: string, cmd: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Bun.spawn of `ip netns exec ns ...cmd` (Bun's options and defaults); cleanup() kills it. */
  spawn<
    const In extends Bun.SpawnOptions.Writable = "ignore",
    const Out extends Bun.SpawnOptions.Readable = "pipe",
    const Err extends Bun.SpawnOptions.Readable = "inherit",
  >(ns: string, cmd: string[], opts?: Bun.SpawnOptions.SpawnOptions<In, Out, Err>): Bun.Subprocess<In, Out, Err>;
  /** Kills the processes started by exec/spawn, deletes the namespaces (and so the veths).
   * Idempotent; never throws. */
  cleanup(): Promise<void>;
}

const live = new Set<TopologyImpl>();
let exitHookInstalled = false;

/** Cleans up every topology of this process that is still alive (for afterAll). */
export async function cleanupAll(): Promise<void> {
  await Promise.all([...live].map((t) => t.cleanup()));
}

export async function createTopology(links: LinkSpec[]): Promise<Topology> {
  if (links.length === 0 || links.length > 99) throw new Error(`createTopology: ${links.length} links (1..99)`);
  installExitHook();
  for (let attempt = 0; ; attempt++) {
    const t = new TopologyImpl(newId(), links);
    live.add(t);
    try {
      await t.build();
      return t;
    } catch (err) {
      await t.cleanup();
      // A name clash with another run is the one failure worth a retry.
      if (attempt < 3 && String(err).includes("File exists")) continue;
      throw err;
    }
  }
}

/** Runs fn with this thread switched into ns (one of this module's namespaces), then switches
 * back: sockets opened inside stay in ns, so one test process can drive both ends. fn must be
 * synchronous (an await would resume in whatever namespace the thread is in by then). */
export function inNamespace<T>(ns: string, fn: () => T): T {
  if (![...live].some((t) => t.owns(ns))) throw new Error(`inNamespace: ${ns} is not a namespace of a live topology`);
  const l = libc();
  const home = openSync("/proc/thread-self/ns/net", "r");
  try {
    const target = openSync(`/run/netns/${ns}`, "r");
    try {
      if (l.setns(target, CLONE_NEWNET) !== 0) throw new Error(`setns ${ns}: ${describeErrno(errno())}`);
    } finally {
      closeSync(target);
    }
    try {
      return fn();
    } finally {
      if (l.setns(home, CLONE_NEWNET) !== 0) {
        // Staying in a test namespace would silently corrupt everything after: stop here.
        console.error(`inNamespace: cannot return to the original namespace: ${describeErrno(errno())}`);
        process.exit(70);
      }
    }
  } finally {
    closeSync(home);
  }
}

/** htb root qdisc on dev's egress: every frame goes through one class at rateMbit. */
export async function shapeLink(ns: string, dev: string, rateMbit: number): Promise<void> {
  await tcBatch(ns, shapeCommands(dev, rateMbit));
}

/** Adds an address (e.g. "10.9.0.1/24") to dev inside ns: only for TCP baselines. */
export async function addAddress(ns: string, dev: string, cidr: string): Promise<void> {
  await run(["ip", "-n", ns, "addr", "add", cidr, "dev", dev]);
}

export async function sha256File(path: string): Promise<string> {
  const h = new Bun.CryptoHasher("sha256");
  const fd = openSync(path, "r");
  try {
    const buf = new Uint8Array(4 << 20);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n <= 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return h.digest("hex");
}

/** Incompressible bytes: AES-128-CTR keystream under a random key (~3 GB/s, /dev/urandom here
 * gives ~160 MB/s). */
export async function makeRandomFile(path: string, bytes: number): Promise<void> {
  const cipher = createCipheriv("aes-128-ctr", randomBytes(16), randomBytes(16));
  const zero = new Uint8Array(Math.min(4 << 20, Math.max(1, bytes)));
  const fd = openSync(path, "w");
  try {
    for (let left = bytes; left > 0; ) {
      const n = Math.min(left, zero.length);
      const out = cipher.update(zero.subarray(0, n));
      writeAll(fd, out);
      left -= n;
    }
  } finally {
    closeSync(fd);
  }
}

/** Real, compressible data (lz4 ratio ~0.55): a tar of /usr cut to size, repeated if /usr is
 * smaller. */
export async function makeCompressibleFile(path: string, bytes: number): Promise<void> {
  const fd = openSync(path, "w");
  try {
    let left = bytes;
    while (left > 0) {
      const before = left;
      const p = Bun.spawn(["tar", "-cf", "-", "-C", "/", "usr"], { stdout: "pipe", stderr: "ignore" });
      const reader = p.stdout.getReader();
      try {
        while (left > 0) {
          const { done, value } = await reader.read();
          if (done) break;
          const take = Math.min(left, value.length);
          writeAll(fd, take === value.length ? value : value.subarray(0, take));
          left -= take;
        }
      } finally {
        reader.releaseLock();
        p.kill("SIGKILL");
        await p.exited;
      }
      if (left === before) throw new Error("makeCompressibleFile: tar of /usr produced no data");
    }
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------

class TopologyImpl implements Topology {
  readonly nsA: string;
  readonly nsB: string;
  readonly nsM?: string;
  readonly devsA: string[] = [];
  readonly devsB: string[] = [];
  readonly midA: (string | undefined)[] = [];
  readonly midB: (string | undefined)[] = [];
  private readonly procs = new Set<Bun.Subprocess>();
  private readonly created: string[] = [];
  private cleaning: Promise<void> | null = null;

  constructor(
    readonly id: string,
    private readonly links: LinkSpec[],
  ) {
    this.nsA = `${id}A`;
    this.nsB = `${id}B`;
    if (links.some((l) => l.middle)) this.nsM = `${id}M`;
    links.forEach((l, i) => {
      this.devsA.push(`${id}a${i}`);
      this.devsB.push(`${id}b${i}`);
      this.midA.push(l.middle ? `${id}x${i}` : undefined);
      this.midB.push(l.middle ? `${id}y${i}` : undefined);
    });
  }

  owns(ns: string): boolean {
    return this.created.includes(ns);
  }

  private namespaces(): string[] {
    return this.nsM ? [this.nsA, this.nsB, this.nsM] : [this.nsA, this.nsB];
  }

  async build(): Promise<void> {
    for (const ns of this.namespaces()) {
      // Record first, so a partial failure still gets cleaned up; `netns add` refuses to reuse a
      // name, so a clash never adopts someone else's namespace.
      await run(["ip", "netns", "add", ns]);
      this.created.push(ns);
    }
    // No IPv6 on the test links: no router solicitations or MLD frames besides ours.
    await Promise.all(this.namespaces().map((ns) => disableIpv6(ns)));

    const add: string[] = [];
    const up = new Map<string, string[]>(this.namespaces().map((ns) => [ns, ["link set dev lo up"]]));
    const shape = new Map<string, string[]>();
    this.links.forEach((l, i) => {
      const mtu = l.mtu ?? 1500;
      const pair = (n1: string, ns1: string, n2: string, ns2: string) => {
        // Distinct ifindexes on the two ends: with equal ones (both 2 in fresh namespaces) the
        // kernel treats the carrier event as non-urgent and delays operstate UP by ~1 s.
        const ix = 10 + add.length * 2;
        add.push(
          `link add ${n1} index ${ix} netns ${ns1} mtu ${mtu} type veth peer name ${n2} index ${ix + 1} netns ${ns2} mtu ${mtu}`,
        );
        up.get(ns1)!.push(`link set dev ${n1} up`);
        up.get(ns2)!.push(`link set dev ${n2} up`);
      };
      if (l.middle) {
        pair(this.devsA[i]!, this.nsA, this.midA[i]!, this.nsM!);
        pair(this.midB[i]!, this.nsM!, this.devsB[i]!, this.nsB);
      } else {
        pair(this.devsA[i]!, this.nsA, this.devsB[i]!, this.nsB);
      }
      if (l.rateMbit) {
        for (const [ns, dev] of [[this.nsA, this.devsA[i]!], [this.nsB, this.devsB[i]!]] as const) {
          if (!shape.has(ns)) shape.set(ns, []);
          shape.get(ns)!.push(...shapeCommands(dev, l.rateMbit));
        }
      }
    });
    await run(["ip", "-batch", "-"], add.join("\n") + "\n");
    await Promise.all([...up].map(([ns, cmds]) => run(["ip", "-n", ns, "-batch", "-"], cmds.join("\n") + "\n")));
    await Promise.all([...shape].map(([ns, cmds]) => tcBatch(ns, cmds)));
    await this.waitCarrier();
  }

  // Waits until every interface is operationally up, so tests can open sockets at once.
  private async waitCarrier(): Promise<void> {
    const devs = new Map<string, string[]>();
    const push = (ns: string, d: string | undefined) => d && (devs.get(ns) ?? devs.set(ns, []).get(ns)!).push(d);
    this.links.forEach((_, i) => {
      push(this.nsA, this.devsA[i]);
      push(this.nsB, this.devsB[i]);
      if (this.nsM) {
        push(this.nsM, this.midA[i]);
        push(this.nsM, this.midB[i]);
      }
    });
    for (let tries = 0; tries < 100; tries++) {
      let allUp = true;
      for (const [ns, list] of devs) {
        const out = await run(["ip", "-n", ns, "-o", "link", "show"]);
        for (const d of list) {
          const line = out.split("\n").find((s) => s.includes(` ${d}@`) || s.includes(` ${d}:`));
          // operstate, not LOWER_UP: IFF_RUNNING (what lookupDevice checks) follows it, and the
          // kernel's linkwatch sets it a little after the carrier.
          if (!line || !/ state UP /.test(line)) allUp = false;
        }
      }
      if (allUp) return;
      await Bun.sleep(20);
    }
    throw new Error(`topology ${this.id}: links did not come up`);
  }

  private checkNs(ns: string): void {
    if (!this.namespaces().includes(ns)) throw new Error(`topology ${this.id}: ${ns} is not one of its namespaces`);
  }

  async exec(ns: string, cmd: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    this.checkNs(ns);
    const stdin = typeof opts.stdin === "string" ? new TextEncoder().encode(opts.stdin) : opts.stdin;
    const p = Bun.spawn(["ip", "netns", "exec", ns, ...cmd], {
      stdin: stdin ?? "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: opts.env ? { ...process.env, ...opts.env } : undefined,
      cwd: opts.cwd,
      timeout: opts.timeoutMs,
      killSignal: "SIGKILL",
    });
    this.track(p);
    const [stdout, stderr] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
    await p.exited;
    return { code: exitCode(p), stdout, stderr };
  }

  spawn<
    const In extends Bun.SpawnOptions.Writable = "ignore",
    const Out extends Bun.SpawnOptions.Readable = "pipe",
    const Err extends Bun.SpawnOptions.Readable = "inherit",
  >(ns: string, cmd: string[], opts?: Bun.SpawnOptions.SpawnOptions<In, Out, Err>): Bun.Subprocess<In, Out, Err> {
    this.checkNs(ns);
    const p = Bun.spawn<In, Out, Err>({ ...(opts ?? {}), cmd: ["ip", "netns", "exec", ns, ...cmd] } as never);
    this.track(p as unknown as Bun.Subprocess);
    return p;
  }

  private track(p: Bun.Subprocess): void {
    this.procs.add(p);
    p.exited.then(
      () => this.procs.delete(p),
      () => this.procs.delete(p),
    );
  }

  cleanup(): Promise<void> {
    this.cleaning ??= this.doCleanup();
    return this.cleaning;
  }

  private async doCleanup(): Promise<void> {
    try {
      const procs = [...this.procs];
      for (const p of procs) {
        try {
          p.kill("SIGKILL");
        } catch {}
      }
      await Promise.race([Promise.allSettled(procs.map((p) => p.exited)), Bun.sleep(2000)]);
      if (this.created.length) {
        const lines = this.created.map((ns) => `netns del ${ns}`).join("\n") + "\n";
        await run(["ip", "-force", "-batch", "-"], lines).catch(() => {});
      }
    } catch {
      // never throws
    } finally {
      this.created.length = 0;
      live.delete(this);
    }
  }

  /** For the exit hook: no awaiting possible there. */
  cleanupSync(): void {
    for (const p of this.procs) {
      try {
        p.kill("SIGKILL");
      } catch {}
    }
    if (this.created.length) {
      try {
        Bun.spawnSync(["ip", "-force", "-batch", "-"], {
          stdin: new TextEncoder().encode(this.created.map((ns) => `netns del ${ns}`).join("\n") + "\n"),
          stdout: "ignore",
          stderr: "ignore",
        });
      } catch {}
      this.created.length = 0;
    }
    live.delete(this);
  }
}

function newId(): string {
  const b = randomBytes(5);
  let s = "l2t";
  for (const x of b) s += (x % 36).toString(36);
  return s;
}

function shapeCommands(dev: string, rateMbit: number): string[] {
  // A burst of 1 ms at full rate (at least two jumbo frames): with tc's default burst, htb
  // depends on timer wake-ups and reached only ~66% of 5 Gbit/s here; with it, within ~5%.
  const burst = Math.max(Math.round(rateMbit * 125), 20000);
  return [
    `qdisc replace dev ${dev} root handle 1: htb default 10 r2q 1000`,
    `class replace dev ${dev} parent 1: classid 1:10 htb rate ${rateMbit}mbit ceil ${rateMbit}mbit burst ${burst} cburst ${burst} quantum 60000`,
  ];
}

async function tcBatch(ns: string, cmds: string[]): Promise<void> {
  await run(["tc", "-n", ns, "-batch", "-"], cmds.join("\n") + "\n");
}

async function disableIpv6(ns: string): Promise<void> {
  const script =
    "for f in /proc/sys/net/ipv6/conf/all/disable_ipv6 /proc/sys/net/ipv6/conf/default/disable_ipv6; " +
    'do [ -w "$f" ] && echo 1 > "$f"; done; true';
  await run(["ip", "netns", "exec", ns, "sh", "-c", script]);
}

/** Runs a setup command; throws with its stderr if it fails. */
async function run(cmd: string[], stdin?: string): Promise<string> {
  const p = Bun.spawn(cmd, {
    stdin: stdin === undefined ? "ignore" : new TextEncoder().encode(stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  const code = await p.exited;
  if (code !== 0) throw new Error(`${cmd.join(" ")} failed (${code}): ${err.trim() || out.trim()}`);
  return out;
}

function exitCode(p: Bun.Subprocess): number {
  if (p.exitCode !== null) return p.exitCode;
  const sig = p.signalCode ? (osConstants.signals as Record<string, number>)[p.signalCode] ?? 0 : 0;
  return 128 + sig;
}

function writeAll(fd: number, buf: Uint8Array): void {
  for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off, buf.length - off);
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  const sweep = () => {
    for (const t of [...live]) t.cleanupSync();
  };
  process.on("exit", sweep);
  for (const [sig, num] of [["SIGINT", 2], ["SIGTERM", 15]] as const) {
    process.once(sig, () => {
      sweep();
      process.exit(128 + num);
    });
  }
}
