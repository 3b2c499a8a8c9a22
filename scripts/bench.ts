// `bun run bench`: l2pipe against socat TCP (and lz4 | socat | lz4 -d) on the same veth pairs and
// the same input files, in network namespaces of its own, every scenario in one run. Prints the
// table and writes docs/BENCHMARKS.md, docs/bench-results.json and docs/bench-chart.svg.
//
//   bun run bench [--quick] [--runs N] [--size MIB] [--mtu 1500,9000] [--data random,compressible,changing]
//                 [--groups a,b,c] [--only TEXT] [--no-build] [--binary PATH] [--no-gnu-time]
//                 [--no-write] [--timeout-s S]
//   bun run bench --render docs/bench-results.json   (tables, doc and chart again, from the JSON)
//
//   groups: a = one unshaped veth; b = 1, 2 and 4 links of 1 Gbit (htb); c = 1 + 1.5 Gbit links;
//   d = codecs: auto, lz4, zstd against the zstd and lz4 pipelines, and data that changes.
//   default: 1 GiB inputs, MTU 9000 and 1500, every scenario, 3 runs (~25 min on 2 cores);
//   --quick: 256 MiB, MTU 9000, a subset (~1.5 min). --only TEXT keeps the scenarios whose id
//   contains TEXT (e.g. "random | l2pipe -0"). Exit status 1 when any run FAILED.
//
// Runs are interleaved (run 1 of every tool of a topology, then run 2, ...) so that the noise of a
// small shared machine falls on all tools alike; ratios are always taken within one invocation.

import {
  chmodSync, closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync, writeSync,
} from "node:fs";
import { cpus, loadavg, release, tmpdir } from "node:os";
import { join } from "node:path";
import { addAddress, createTopology, makeCompressibleFile, makeRandomFile, sha256File, type Topology } from "../test/support/netns";
import { awaitReady, haveGnuTime, killAllGroups, packetSockets, Side, tcpListening } from "./bench-side";
import { renderMarkdown, renderSvg, renderTable, summarize } from "./bench-report";
import type { BenchResults, Data, RunResult, Scenario, Tool } from "./bench-types";

const root = new URL("..", import.meta.url).pathname;
const GIB = 1 << 30;
const TCP_PORT = 5201;
// Addresses only ever exist inside this script's own namespaces, on link 0.
const ADDR_A = "10.77.1.1";
const ADDR_B = "10.77.1.2";

// ---------------------------------------------------------------------------------------------
// Options

interface Opts {
  quick: boolean;
  runs: number;
  sizeMiB: number;
  mtus: number[];
  data: Data[];
  groups: string[];
  only: string | null;
  build: boolean;
  binary: string;
  gnuTime: boolean;
  write: boolean;
  timeoutS: number | null;
  render: string | null;
}

function usage(code: number): never {
  const text = readFileSync(new URL(import.meta.url).pathname, "utf8")
    .split("\n")
    .filter((l) => l.startsWith("//"))
    .slice(0, 14)
    .map((l) => l.slice(3))
    .join("\n");
  (code ? console.error : console.log)(text);
  process.exit(code);
}

function parseOpts(argv: string[]): Opts {
  const o: Opts = {
    quick: false,
    runs: 3,
    sizeMiB: 0,
    mtus: [],
    data: ["random", "compressible", "changing"],
    groups: ["a", "b", "c", "d"],
    only: null,
    build: true,
    binary: join(root, "dist/l2pipe"),
    gnuTime: true,
    write: true,
    timeoutS: null,
    render: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = () => {
      const v = argv[++i];
      if (v === undefined) {
        console.error(`bench: ${a} needs a value`);
        usage(2);
      }
      return v;
    };
    const list = () => val().split(",").map((s) => s.trim()).filter(Boolean);
    switch (a) {
      case "--quick": o.quick = true; break;
      case "--runs": o.runs = Number(val()); break;
      case "--size": o.sizeMiB = Number(val()); break;
      case "--mtu": o.mtus = list().map(Number); break;
      case "--data": o.data = list() as Data[]; break;
      case "--groups": o.groups = list(); break;
      case "--only": o.only = val(); break;
      case "--no-build": o.build = false; break;
      case "--binary": o.binary = val(); o.build = false; break;
      case "--no-gnu-time": o.gnuTime = false; break;
      case "--no-write": o.write = false; break;
      case "--timeout-s": o.timeoutS = Number(val()); break;
      case "--render": o.render = val(); break;
      case "-h": case "--help": usage(0);
      default:
        console.error(`bench: unknown argument ${a}`);
        usage(2);
    }
  }
  if (!Number.isInteger(o.runs) || o.runs < 1) { console.error("bench: --runs must be >= 1"); usage(2); }
  if (o.sizeMiB === 0) o.sizeMiB = o.quick ? 256 : 1024;
  if (!(o.sizeMiB > 0)) { console.error("bench: --size must be > 0 (MiB)"); usage(2); }
  if (o.mtus.length === 0) o.mtus = o.quick ? [9000] : [9000, 1500];
  if (o.mtus.some((m) => !Number.isInteger(m) || m < 576 || m > 65535)) { console.error("bench: bad --mtu"); usage(2); }
  if (o.data.some((d) => !["random", "compressible", "changing"].includes(d))) { console.error("bench: --data is random,compressible,changing"); usage(2); }
  if (o.groups.some((g) => !["a", "b", "c", "d"].includes(g))) { console.error("bench: --groups is a,b,c,d"); usage(2); }
  return o;
}

// ---------------------------------------------------------------------------------------------
// The plan: topologies, and the scenarios run on each

interface TopoPlan {
  key: string;
  group: "a" | "b" | "c" | "d";
  mtu: number;
  rates: (number | null)[];
  linksDesc: string;
  scenarios: Scenario[];
}

function plan(o: Opts): TopoPlan[] {
  const topos: TopoPlan[] = [];
  const add = (group: TopoPlan["group"], mtu: number, rates: (number | null)[], linksDesc: string, tools: [Data, Tool, string[], string][]) => {
    const key = `${group} mtu${mtu} ${linksDesc}`;
    const capacity = rates.every((r) => r !== null) ? (rates as number[]).reduce((a, b) => a + b, 0) : null;
    const scenarios: Scenario[] = tools
      .filter(([data]) => o.data.includes(data))
      .map(([data, tool, args, label]) => ({
        id: `${key} | ${data} | ${label}`,
        group,
        mtu,
        rates,
        linksDesc,
        capacityMbit: capacity,
        data,
        tool,
        args,
        label,
        runs: [],
      }))
      .filter((s) => !o.only || s.id.includes(o.only));
    if (scenarios.length) topos.push({ key, group, mtu, rates, linksDesc, scenarios });
  };
  const L0: [string[], string] = [["-0"], "l2pipe -0"];
  const LD: [string[], string] = [[], "l2pipe"];
  const l2 = (data: Data, [args, label]: [string[], string]): [Data, Tool, string[], string] => [data, "l2pipe", args, label];
  const tcp = (data: Data): [Data, Tool, string[], string] => [data, "tcp", [], "socat TCP"];
  const lz4 = (data: Data): [Data, Tool, string[], string] => [data, "lz4+tcp", [], "lz4 -1 | socat | lz4 -d"];
  const zstd = (data: Data): [Data, Tool, string[], string] => [data, "zstd+tcp", [], "zstd -1 -T0 | socat | zstd -d"];
  const CL: [string[], string] = [["--compress", "lz4"], "l2pipe --compress lz4"];
  const Z1: [string[], string] = [["--compress", "zstd:1"], "l2pipe --compress zstd:1"];
  const Z3: [string[], string] = [["--compress", "zstd:3"], "l2pipe --compress zstd:3"];
  for (const mtu of o.mtus) {
    if (o.groups.includes("a")) {
      add("a", mtu, [null], "1 veth, unshaped", [
        l2("random", L0), l2("random", LD), tcp("random"),
        l2("compressible", L0), l2("compressible", LD), tcp("compressible"), lz4("compressible"),
      ].filter(([d, t, a]) => !o.quick || !(d === "compressible" && t === "l2pipe" && a[0] === "-0")));
    }
    if (o.groups.includes("b")) {
      for (const n of o.quick ? [1, 2] : [1, 2, 4]) {
        const tools: [Data, Tool, string[], string][] = o.quick
          ? [l2("random", L0), l2("compressible", LD)]
          : [l2("random", L0), l2("random", LD), l2("compressible", LD)];
        if (n === 1) tools.push(tcp("random"), tcp("compressible"), ...(o.quick ? [] : [lz4("compressible")]));
        add("b", mtu, Array(n).fill(1000), `${n} x 1 Gbit`, tools);
      }
    }
    if (o.groups.includes("d")) {
      // What a user would type instead, and each fixed setting, beside the adaptive default.
      add("d", mtu, [1000], "1 x 1 Gbit", [
        l2("compressible", LD), l2("compressible", CL), l2("compressible", Z1), tcp("compressible"), lz4("compressible"), zstd("compressible"),
        l2("changing", LD), l2("changing", CL), l2("changing", Z1), l2("changing", Z3), l2("changing", L0),
      ]);
      add("d", mtu, [1000, 1500], "1 + 1.5 Gbit", [l2("compressible", LD), l2("compressible", CL), l2("compressible", Z1), l2("compressible", Z3)]);
    }
    if (o.groups.includes("c")) {
      const W: [string[], string] = [["-a", "2.3"], "l2pipe -a 2.3"];
      add("c", mtu, [1000, 1500], "1 + 1.5 Gbit", o.quick
        ? [l2("random", LD), l2("random", W)]
        : [l2("random", LD), l2("random", W), l2("compressible", LD), l2("compressible", W)]);
    }
  }
  return topos;
}

// ---------------------------------------------------------------------------------------------
// One run of one scenario

interface Inputs {
  path: Record<Data, string>;
  sha: Record<Data, string>;
  bytes: number;
}

const MB = 1e6;
/** The "changing" input alternates text and random data this often. */
const CHANGE_SEGMENT = 64 << 20;

function parseSize(n: string, unit: string): number {
  return Number(n) * ({ B: 1, KiB: 1024, MiB: 1 << 20, GiB: GIB } as Record<string, number>)[unit]!;
}

/** The sender's -v summary: its own elapsed time, wire bytes, resent frames, bytes per link. */
function parseSenderSummary(stderr: string) {
  const head = /l2pipe send: (done|FAILED) in ([\d.]+) s: .*?, ([\d.]+) (B|KiB|MiB|GiB) on the wire/.exec(stderr);
  let sent = 0;
  let resent = 0;
  const perLink: number[] = [];
  for (const m of stderr.matchAll(/^ {2}\S+: .*?(\d+) frames sent \(([\d.]+) (B|KiB|MiB|GiB)\) (\d+) resent/gm)) {
    sent += Number(m[1]);
    resent += Number(m[4]);
    perLink.push(parseSize(m[2]!, m[3]!));
  }
  const total = perLink.reduce((a, b) => a + b, 0);
  return {
    selfS: head ? Number(head[2]) : null,
    wireBytes: head ? parseSize(head[3]!, head[4]!) : null,
    resentPct: sent > 0 ? (100 * resent) / sent : null,
    linkShare: total > 0 ? perLink.map((b) => b / total) : null,
  };
}

/** Per 64 MiB segment of a "changing" input (text first), from the sender's --stats-json trace of
 * codec changes: how long after its first byte was read the policy last changed the codec within
 * it, and the codec that held for most of it. */
function settleOf(statsJson: string, bytes: number): RunResult["settle"] {
  let trace: Array<{ ms: number; read: number; codec: string }>;
  try {
    trace = JSON.parse(readFileSync(statsJson, "utf8"))?.compression?.codecTrace ?? [];
  } catch {
    return null;
  }
  if (trace.length === 0) return null;
  const out: NonNullable<RunResult["settle"]> = [];
  for (let k = 0; k * CHANGE_SEGMENT < bytes; k++) {
    const from = k * CHANGE_SEGMENT;
    const to = Math.min(bytes, from + CHANGE_SEGMENT);
    // When the segment's first byte was read: interpolated between the trace points around it.
    const inside = trace.filter((c) => c.read > from && c.read < to);
    const before = [...trace].reverse().find((c) => c.read <= from);
    const startMs = before && inside.length ? before.ms + ((inside[0]!.ms - before.ms) * (from - before.read)) / Math.max(1, inside[0]!.read - before.read) : 0;
    const settleMs = inside.length ? Math.max(0, inside.at(-1)!.ms - startMs) : 0;
    // The codec over most of the segment's bytes.
    const spans = new Map<string, number>();
    let codec = before?.codec ?? trace[0]!.codec;
    let pos = from;
    for (const c of inside) {
      spans.set(codec, (spans.get(codec) ?? 0) + (c.read - pos));
      codec = c.codec;
      pos = c.read;
    }
    spans.set(codec, (spans.get(codec) ?? 0) + (to - pos));
    const main = [...spans].sort((a, b) => b[1] - a[1])[0]![0];
    out.push({ segment: k, kind: k % 2 === 0 ? "text" : "random", settleMs: Math.round(settleMs), codec: main });
  }
  return out;
}

async function runOnce(topo: Topology, sc: Scenario, inputs: Inputs, o: Opts, scratch: string): Promise<RunResult> {
  const input = inputs.path[sc.data];
  const out = join(scratch, "out");
  rmSync(out, { force: true });
  const bin = o.binary;
  const n = sc.rates.length;
  // 1 MiB blocks: with socat's default 8 KiB the syscalls, not TCP, limit it (~300 MB/s here).
  const recvTcp = ["socat", "-b", "1048576", "-u", `TCP-LISTEN:${TCP_PORT},reuseaddr,bind=${ADDR_B}`, "STDOUT"];
  const sendTcp = ["socat", "-b", "1048576", "-u", "STDIN", `TCP:${ADDR_B}:${TCP_PORT}`];
  let rPipe: string[][];
  let sPipe: string[][];
  const statsJson = join(scratch, "sender.json");
  rmSync(statsJson, { force: true });
  if (sc.tool === "l2pipe") {
    rPipe = [[bin, "-r", "-v", ...topo.devsB]];
    sPipe = [[bin, "-s", "-v", "--stats-json", statsJson, ...sc.args, ...topo.devsA]];
  } else if (sc.tool === "tcp") {
    rPipe = [recvTcp];
    sPipe = [sendTcp];
  } else if (sc.tool === "zstd+tcp") {
    rPipe = [recvTcp, ["zstd", "-d", "-c", "-q"]];
    sPipe = [["zstd", "-1", "-T0", "-c", "-q"], sendTcp];
  } else {
    rPipe = [recvTcp, ["lz4", "-d", "-c"]];
    sPipe = [["lz4", "-1", "-c"], sendTcp];
  }
  // At least 20 MB/s of the slowest plausible rate, plus start-up.
  const timeoutMs = (o.timeoutS ?? 30 + inputs.bytes / (20 * MB)) * 1000;
  const receiver = new Side({ ns: topo.nsB, pipeline: rPipe, stdout: out, scratch: join(scratch, "r"), gnuTime: o.gnuTime });
  let sender: Side | null = null;
  let timer: Timer | null = null;
  let timedOut = false;
  try {
    if (sc.tool === "l2pipe") await awaitReady(receiver, "l2pipe -r", () => packetSockets(receiver.pid) >= n);
    else await awaitReady(receiver, "socat TCP-LISTEN", () => tcpListening(receiver.pid, TCP_PORT));
    const t0 = performance.now();
    sender = new Side({ ns: topo.nsA, pipeline: sPipe, stdin: input, scratch: join(scratch, "s"), gnuTime: o.gnuTime });
    timer = setTimeout(() => {
      timedOut = true;
      sender?.kill();
      receiver.kill();
    }, timeoutMs);
    const [s, r] = await Promise.all([sender.wait(t0), receiver.wait(t0)]);
    clearTimeout(timer);
    const wallS = Math.max(s.endMs, r.endMs) / 1000;
    const outSha = existsSync(out) ? await sha256File(out) : "(no output)";
    const outBytes = existsSync(out) ? statSync(out).size : 0;
    rmSync(out, { force: true });
    const shaOk = outSha === inputs.sha[sc.data];
    const failures: string[] = [];
    if (timedOut) failures.push(`timeout after ${(timeoutMs / 1000).toFixed(0)} s`);
    if (s.code !== 0) failures.push(`sender exit ${s.codes.join("|")}`);
    if (r.code !== 0) failures.push(`receiver exit ${r.codes.join("|")}`);
    if (!shaOk) failures.push(`sha256 MISMATCH (${outBytes} of ${inputs.bytes} bytes)`);
    const parsed = sc.tool === "l2pipe" ? parseSenderSummary(s.stderr) : null;
    const errLines = (t: string) =>
      t.split("\n").filter((l) => /l2pipe: |error|fail/i.test(l) && !/^l2pipe (send|receive): done/.test(l)).slice(0, 3).join(" / ");
    if (failures.length) {
      const msg = [errLines(s.stderr), errLines(r.stderr)].filter(Boolean).join(" ; ");
      if (msg) failures.push(msg);
    }
    const gib = inputs.bytes / GIB;
    return {
      ok: failures.length === 0,
      failure: failures.length ? failures.join("; ") : null,
      wallS,
      mbps: inputs.bytes / MB / wallS,
      selfS: parsed?.selfS ?? null,
      selfMbps: parsed?.selfS ? inputs.bytes / MB / parsed.selfS : null,
      wireRatio: parsed?.wireBytes != null && inputs.bytes > 0 ? parsed.wireBytes / inputs.bytes : null,
      resentPct: parsed?.resentPct ?? null,
      linkShare: parsed?.linkShare ?? null,
      settle: sc.data === "changing" && sc.tool === "l2pipe" && failures.length === 0 ? settleOf(statsJson, inputs.bytes) : null,
      sha256Ok: shaOk,
      sender: { code: s.code, cpuS: s.cpuS, cpuSPerGiB: s.cpuS / gib, rssMiB: s.rssKiB / 1024, method: s.method },
      receiver: { code: r.code, cpuS: r.cpuS, cpuSPerGiB: r.cpuS / gib, rssMiB: r.rssKiB / 1024, method: r.method },
    };
  } finally {
    if (timer) clearTimeout(timer);
    sender?.kill();
    receiver.kill();
  }
}

// ---------------------------------------------------------------------------------------------

/** Text and random data taking turns every CHANGE_SEGMENT bytes, text first. */
async function makeChangingFile(path: string, bytes: number, tmp: string): Promise<void> {
  const sources = [`${tmp}.text`, `${tmp}.random`];
  await makeCompressibleFile(sources[0]!, bytes);
  await makeRandomFile(sources[1]!, bytes);
  const fds = sources.map((p) => openSync(p, "r"));
  const out = openSync(path, "w");
  const buf = new Uint8Array(4 << 20);
  try {
    for (let pos = 0; pos < bytes; ) {
      const fd = fds[Math.floor(pos / CHANGE_SEGMENT) % 2]!;
      const want = Math.min(buf.length, bytes - pos, CHANGE_SEGMENT - (pos % CHANGE_SEGMENT));
      const n = readSync(fd, buf, 0, want, pos);
      if (n <= 0) throw new Error(`bench: short read making the changing input at ${pos}`);
      writeSync(out, buf, 0, n);
      pos += n;
    }
  } finally {
    for (const fd of [...fds, out]) closeSync(fd);
    for (const p of sources) rmSync(p, { force: true });
  }
}

function sh(cmd: string[]): string {
  try {
    const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe", cwd: root });
    return (r.stdout.toString() + r.stderr.toString()).trim();
  } catch {
    return "";
  }
}

/**
 * A fresh VM's memory costs about three times as much the first time it is touched (the host
 * backs it then): 6 GiB written into tmpfs took 21 s the first time and 6.6 s the next. The
 * first run of a scenario would pay that for its output file, so that much is written and
 * freed once, untimed, before any run.
 */
function warmMemory(dir: string, mib: number): void {
  const t = performance.now();
  const file = join(dir, "warm-up");
  Bun.spawnSync(["dd", "if=/dev/zero", `of=${file}`, "bs=1M", `count=${Math.ceil(mib)}`], { stdout: "ignore", stderr: "ignore" });
  rmSync(file, { force: true });
  console.error(`bench: ${Math.ceil(mib)} MiB of memory touched once in ${((performance.now() - t) / 1000).toFixed(1)} s`);
}

async function main() {
  const o = parseOpts(process.argv.slice(2));
  if (o.render) {
    const results = JSON.parse(readFileSync(o.render, "utf8")) as BenchResults;
    results.summary = summarize(results);
    console.log(renderTable(results));
    if (o.write) writeDocs(results);
    return;
  }
  if (process.getuid?.() !== 0) {
    console.error("bench: needs root (network namespaces, packet sockets)");
    process.exit(3);
  }
  for (const tool of ["socat", "lz4", "zstd", "ip", "tc", "setsid"]) {
    if (!Bun.which(tool)) {
      console.error(`bench: ${tool} is missing (apt-get install socat lz4 zstd iproute2 util-linux)`);
      process.exit(3);
    }
  }
  const gnuTime = o.gnuTime && haveGnuTime();
  o.gnuTime = gnuTime;

  // Before createTopology installs its own hooks: this one runs first, kills our process
  // groups, and its process.exit runs the topology sweep (namespaces) and the scratch removal.
  const base = existsSync("/dev/shm") && statSync("/dev/shm").isDirectory() ? "/dev/shm" : tmpdir();
  const scratch = mkdtempSync(join(base, "l2pipe-bench-"));
  const removeScratch = () => rmSync(scratch, { recursive: true, force: true });
  process.on("exit", () => {
    killAllGroups();
    removeScratch();
  });
  for (const [sig, num] of [["SIGINT", 2], ["SIGTERM", 15]] as const) {
    process.on(sig, () => {
      console.error(`\nbench: ${sig}: cleaning up`);
      killAllGroups();
      process.exit(128 + num);
    });
  }

  if (o.build) {
    const b = Bun.spawnSync(["bun", "scripts/build.ts"], { cwd: root, stdout: "inherit", stderr: "inherit" });
    if (b.exitCode !== 0) {
      console.error("bench: build failed");
      process.exit(1);
    }
  }
  if (!existsSync(o.binary)) {
    console.error(`bench: ${o.binary} is missing`);
    process.exit(3);
  }
  // A private copy: a rebuild of dist/ during the run (tests do one) must not change or break it.
  const binaryFrom = o.binary;
  o.binary = join(scratch, "l2pipe");
  copyFileSync(binaryFrom, o.binary);
  chmodSync(o.binary, 0o755);

  const topos = plan(o);
  const total = topos.reduce((a, t) => a + t.scenarios.length, 0) * o.runs;
  if (total === 0) {
    console.error("bench: no scenario matches");
    process.exit(2);
  }
  const started = new Date();
  const load0 = loadavg();
  const t00 = performance.now();

  const bytes = Math.round(o.sizeMiB * (1 << 20));
  const needed = new Set(topos.flatMap((t) => t.scenarios.map((s) => s.data)));
  const inputs: Inputs = { path: {} as Inputs["path"], sha: {} as Inputs["sha"], bytes };
  for (const d of needed) {
    const p = join(scratch, `in-${d}`);
    const t = performance.now();
    if (d === "random") await makeRandomFile(p, bytes);
    else if (d === "compressible") await makeCompressibleFile(p, bytes);
    else await makeChangingFile(p, bytes, join(scratch, "segment"));
    // A short input would pass the sha check and make nonsense of the rates.
    if (statSync(p).size !== bytes) throw new Error(`bench: ${d} input is ${statSync(p).size} bytes, not ${bytes}`);
    inputs.path[d] = p;
    inputs.sha[d] = await sha256File(p);
    console.error(`bench: ${d} input ${o.sizeMiB} MiB made in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  }
  warmMemory(scratch, 2 * o.sizeMiB + 256);
  console.error(
    `bench: ${topos.length} topologies, ${total / o.runs} scenarios x ${o.runs} runs, ${o.sizeMiB} MiB each; ` +
      `CPU/RSS from ${gnuTime ? "GNU time per process" : "wait4 rusage (CPU) and /proc VmHWM polling (RSS)"}`,
  );

  let done = 0;
  for (const tp of topos) {
    const topo = await createTopology(tp.rates.map((r) => ({ mtu: tp.mtu, rateMbit: r ?? undefined })));
    try {
      if (tp.scenarios.some((s) => s.tool !== "l2pipe")) {
        await addAddress(topo.nsA, topo.devsA[0]!, `${ADDR_A}/24`);
        await addAddress(topo.nsB, topo.devsB[0]!, `${ADDR_B}/24`);
      }
      for (let r = 0; r < o.runs; r++) {
        // Rotated order: no tool always runs first after a topology's creation.
        const order = tp.scenarios.map((_, i) => tp.scenarios[(i + r) % tp.scenarios.length]!);
        for (const sc of order) {
          let res: RunResult;
          try {
            res = await runOnce(topo, sc, inputs, o, scratch);
          } catch (e) {
            res = failedRun(String((e as Error).message ?? e));
          }
          sc.runs.push(res);
          done++;
          const line =
            `[${done}/${total}] ${sc.id} run ${r + 1}: ` +
            (res.ok
              ? `${res.mbps.toFixed(1)} MB/s, wall ${res.wallS.toFixed(2)} s` +
                (res.selfS != null ? ` (l2pipe's own ${res.selfS.toFixed(2)} s)` : "") +
                `, CPU ${res.sender.cpuS.toFixed(2)}/${res.receiver.cpuS.toFixed(2)} s`
              : `FAILED: ${res.failure}`);
          console.error(res.ok ? line : red(line));
        }
      }
    } finally {
      killAllGroups();
      await topo.cleanup();
    }
  }

  const scenarios = topos.flatMap((t) => t.scenarios);
  const results: BenchResults = {
    meta: {
      date: started.toISOString(),
      durationS: (performance.now() - t00) / 1000,
      mode: o.quick ? "quick" : "full",
      runs: o.runs,
      inputMiB: o.sizeMiB,
      mtus: o.mtus,
      host: {
        cpu: cpus()[0]?.model ?? "?",
        cores: cpus().length,
        memGiB: Math.round((Number(/MemTotal:\s+(\d+)/.exec(readFileSync("/proc/meminfo", "utf8"))?.[1] ?? 0) / (1 << 20)) * 10) / 10,
        kernel: release(),
        loadavgBefore: load0,
        loadavgAfter: loadavg(),
      },
      versions: {
        bun: Bun.version,
        l2pipe: sh([o.binary, "-V"]).replace(/^l2pipe /, "") + (o.build ? " (built by this run from the work tree)" : ` (${binaryFrom}, not rebuilt)`),
        commit: sh(["git", "rev-parse", "--short", "HEAD"]) + (sh(["git", "status", "--porcelain", "--untracked-files=no"]) ? " (with uncommitted changes)" : ""),
        socat: /socat version (\S+)/.exec(sh(["socat", "-V"]))?.[1] ?? "?",
        lz4: /v(\d+\.\d+\.\d+)/.exec(sh(["lz4", "--version"]))?.[1] ?? "?",
        zstd: /v(\d+\.\d+\.\d+)/.exec(sh(["zstd", "--version"]))?.[1] ?? "?",
      },
      measurement: {
        cpuAndRss: gnuTime
          ? "GNU /usr/bin/time per process (wait4 rusage): CPU = user+system summed over the side's processes, peak RSS summed"
          : "no /usr/bin/time: CPU = wait4 rusage of each side's shell (user+system of every process of the side), peak RSS = VmHWM of each process polled every 50 ms, summed",
        rate: "MB/s = input bytes / 1e6 / wall time measured by the script from the sender's start until both sides have exited",
        selfRate: "l2pipe's own: input bytes / the sender's 'done in X s' from -v",
      },
    },
    summary: [],
    scenarios,
  };
  results.summary = summarize(results);

  const table = renderTable(results);
  console.log(table);
  if (o.write) writeDocs(results);
  const failed = scenarios.flatMap((s) => s.runs.filter((r) => !r.ok).map((r) => `${s.id}: ${r.failure}`));
  if (failed.length) {
    console.error(red(`bench: ${failed.length} run(s) FAILED:\n  ${failed.join("\n  ")}`));
    process.exit(1);
  }
}

function writeDocs(results: BenchResults): void {
  mkdirSync(join(root, "docs"), { recursive: true });
  writeFileSync(join(root, "docs/bench-results.json"), JSON.stringify(results, null, 2) + "\n");
  writeFileSync(join(root, "docs/bench-chart.svg"), renderSvg(results));
  writeFileSync(join(root, "docs/BENCHMARKS.md"), renderMarkdown(results));
  console.error("bench: wrote docs/BENCHMARKS.md, docs/bench-results.json, docs/bench-chart.svg");
}

function red(s: string): string {
  return process.stderr.isTTY ? `\x1b[1;31m${s}\x1b[0m` : s;
}

function failedRun(msg: string): RunResult {
  const side = { code: -1, cpuS: 0, cpuSPerGiB: 0, rssMiB: 0, method: "wait4" as const };
  return {
    ok: false,
    failure: msg,
    wallS: 0,
    mbps: 0,
    selfS: null,
    selfMbps: null,
    wireRatio: null,
    resentPct: null,
    linkShare: null,
    sha256Ok: false,
    sender: { ...side },
    receiver: { ...side },
  };
}

await main();
