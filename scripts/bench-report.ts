// Turns bench results into the summary lines, the terminal table, docs/BENCHMARKS.md and the SVG
// chart. Pure functions of the results.

import type { BenchResults, Data, Scenario } from "./bench-types";

// The 2017 C tool, from shared/reference/original-design.md: measured there on a machine like this
// one (2 vCPU, namespaces over veths, 1 GiB, min/median of 3). That tool is not here: never re-run.
export const REFERENCE_2017 = {
  source: "shared/reference/original-design.md (the 2017 C tool, not re-measured here)",
  rows: [
    { data: "random", mtu: 1500, links: 1, compressors: "4", bestMBps: 201, medianMBps: 190 },
    { data: "random", mtu: 1500, links: 2, compressors: "-0", bestMBps: 245, medianMBps: 230 },
    { data: "random", mtu: 9000, links: 1, compressors: "4", bestMBps: 336, medianMBps: 319 },
    { data: "random", mtu: 9000, links: 2, compressors: "-0", bestMBps: 377, medianMBps: 364 },
    { data: "compressible", mtu: 9000, links: 1, compressors: "4", bestMBps: 341, medianMBps: 293 },
    { data: "compressible", mtu: 9000, links: 2, compressors: "4", bestMBps: 336, medianMBps: 327 },
  ],
  tcpMBps: "1600-2050 (socat, offloads on)",
  lz4PipeMBps: "350-370 (lz4 -1 | socat | lz4 -d, compressible)",
};

// l2pipe's CPU per GiB before the work on CPU per byte (rings cut from 64 MiB, FTL turned off):
// the full run at dc42d16, 1 GiB random, -0, MTU 9000, medians of 3. Not side by side with this run.
export const CPU_BEFORE = { commit: "dc42d16", veth: { send: 1.12, recv: 1.61 }, gbit: { send: 1.61, recv: 2.66 } };

// ---------------------------------------------------------------------------------------------
// Statistics

function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export interface Stats {
  ok: number;
  n: number;
  mbps: { med: number; min: number; max: number };
  selfMbps: number | null;
  capacityPct: number | null;
  cpuSend: number;
  cpuRecv: number;
  rssSend: number;
  rssRecv: number;
  resentPct: number | null;
  wireRatio: number | null;
  linkShare: number[] | null;
}

export function stats(sc: Scenario): Stats {
  const ok = sc.runs.filter((r) => r.ok);
  const v = ok.map((r) => r.mbps);
  const opt = (xs: (number | null)[]) => {
    const ys = xs.filter((x): x is number => x !== null && Number.isFinite(x));
    return ys.length ? median(ys) : null;
  };
  const med = median(v);
  const shares = ok.map((r) => r.linkShare).filter((s): s is number[] => !!s && s.length === sc.rates.length);
  return {
    ok: ok.length,
    n: sc.runs.length,
    mbps: { med, min: Math.min(...v), max: Math.max(...v) },
    selfMbps: opt(ok.map((r) => r.selfMbps)),
    capacityPct: sc.capacityMbit ? (100 * med) / (sc.capacityMbit / 8) : null,
    cpuSend: median(ok.map((r) => r.sender.cpuSPerGiB)),
    cpuRecv: median(ok.map((r) => r.receiver.cpuSPerGiB)),
    rssSend: median(ok.map((r) => r.sender.rssMiB)),
    rssRecv: median(ok.map((r) => r.receiver.rssMiB)),
    resentPct: opt(ok.map((r) => r.resentPct)),
    wireRatio: opt(ok.map((r) => r.wireRatio)),
    linkShare: shares.length ? sc.rates.map((_, i) => median(shares.map((s) => s[i]!))) : null,
  };
}

// ---------------------------------------------------------------------------------------------
// Summary

const f0 = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : "-");
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "-");
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "-");

/** The scenario of this group, MTU, links (null: any), data and tool label. */
function scenarioOf(res: BenchResults, group: string, mtu: number, linksDesc: string | null, data: Data, label: string): Scenario | undefined {
  return res.scenarios.find((x) => x.group === group && x.mtu === mtu && (linksDesc === null || x.linksDesc === linksDesc) && x.data === data && x.label === label);
}

/** That scenario's statistics, or null when it is missing or none of its runs succeeded. */
function statsOf(res: BenchResults, group: string, mtu: number, linksDesc: string | null, data: Data, label: string): Stats | null {
  const s = scenarioOf(res, group, mtu, linksDesc, data, label);
  if (!s) return null;
  const st = stats(s);
  return st.ok > 0 ? st : null;
}

export function summarize(res: BenchResults): string[] {
  const sc = res.scenarios;
  const scenario = (group: string, mtu: number, linksDesc: string | null, data: Data, label: string) => scenarioOf(res, group, mtu, linksDesc, data, label);
  const find = (group: string, mtu: number, linksDesc: string | null, data: Data, label: string) => statsOf(res, group, mtu, linksDesc, data, label);
  // Run k of every tool on a topology falls in the same round, minutes apart at most: the ratio
  // within a round is spared most of the machine's slower and faster phases.
  const roundRatios = (a: Scenario | undefined, b: Scenario | undefined): string => {
    if (!a || !b) return "";
    const rs: number[] = [];
    for (let k = 0; k < Math.min(a.runs.length, b.runs.length); k++) {
      if (a.runs[k]!.ok && b.runs[k]!.ok) rs.push(a.runs[k]!.mbps / b.runs[k]!.mbps);
    }
    return rs.length ? ` (per round ${f2(median(rs))}, ${f2(Math.min(...rs))}-${f2(Math.max(...rs))})` : "";
  };
  const lines: string[] = [];
  const failed = sc.reduce((n, s) => n + s.runs.filter((r) => !r.ok).length, 0);
  if (failed) lines.push(`FAILED: ${failed} run(s) failed (sha256 mismatch, non-zero exit or timeout); see the table. Numbers below use only the good runs.`);
  const mtus = [...new Set(sc.map((s) => s.mtu))].sort((a, b) => b - a);

  // 1. l2pipe against TCP on one unshaped veth.
  for (const mtu of mtus) {
    const l0 = find("a", mtu, null, "random", "l2pipe -0");
    const ld = find("a", mtu, null, "random", "l2pipe");
    const tcp = find("a", mtu, null, "random", "socat TCP");
    if (tcp && (l0 || ld)) {
      const parts: string[] = [];
      if (l0) parts.push(`l2pipe -0 ${f0(l0.mbps.med)} MB/s`);
      if (ld) parts.push(`l2pipe (default, 4 compressors) ${f0(ld.mbps.med)} MB/s`);
      const tcpSc = scenario("a", mtu, null, "random", "socat TCP");
      const ratios = [
        l0 && `-0 ${f2(l0.mbps.med / tcp.mbps.med)}${roundRatios(scenario("a", mtu, null, "random", "l2pipe -0"), tcpSc)}`,
        ld && `default ${f2(ld.mbps.med / tcp.mbps.med)}${roundRatios(scenario("a", mtu, null, "random", "l2pipe"), tcpSc)}`,
      ].filter(Boolean);
      lines.push(
        `l2pipe / TCP, one unshaped veth, MTU ${mtu}, random data: ${parts.join(", ")} vs socat TCP ${f0(tcp.mbps.med)} MB/s: ratio ${ratios.join(", ")}.`,
      );
    }
  }
  // 2. Goodput against the sum of the htb rates.
  for (const mtu of mtus) {
    const parts: string[] = [];
    for (const s of sc.filter((x) => x.mtu === mtu && x.capacityMbit && x.data === "random")) {
      const st = stats(s);
      if (st.ok === 0) continue;
      parts.push(`${s.linksDesc} ${s.label} ${f0(st.capacityPct!)}% (${f0(st.mbps.med)} MB/s)`);
    }
    if (parts.length) lines.push(`Goodput / link capacity (sum of htb rates), random data, MTU ${mtu}: ${parts.join("; ")}.`);
  }
  // 3. Compressible data over one 1 Gbit link.
  for (const mtu of mtus) {
    const l = find("b", mtu, "1 x 1 Gbit", "compressible", "l2pipe");
    if (!l) continue;
    const tcp = find("b", mtu, "1 x 1 Gbit", "compressible", "socat TCP");
    const lz = find("b", mtu, "1 x 1 Gbit", "compressible", "lz4 -1 | socat | lz4 -d");
    let line = `Compressible data over one 1 Gbit link, MTU ${mtu}: l2pipe (default) moves ${f0(l.mbps.med)} MB/s of input = ${f2(l.mbps.med / 125)} x the link capacity (125 MB/s)`;
    if (l.wireRatio !== null) line += ` (wire/input ${f2(l.wireRatio)})`;
    if (tcp) line += `; socat TCP over the same link ${f0(tcp.mbps.med)} MB/s (${f2(tcp.mbps.med / 125)} x): l2pipe/TCP = ${f2(l.mbps.med / tcp.mbps.med)}`;
    if (lz) line += `; lz4 -1 | socat | lz4 -d ${f0(lz.mbps.med)} MB/s: l2pipe/that = ${f2(l.mbps.med / lz.mbps.med)}`;
    lines.push(line + ".");
  }
  // 4. CPU per GiB on each side, on the unshaped veth.
  for (const mtu of mtus.slice(0, 1)) {
    const parts: string[] = [];
    for (const [data, label] of [
      ["random", "l2pipe -0"],
      ["random", "l2pipe"],
      ["random", "socat TCP"],
      ["compressible", "l2pipe"],
      ["compressible", "socat TCP"],
      ["compressible", "lz4 -1 | socat | lz4 -d"],
    ] as [Data, string][]) {
      const st = find("a", mtu, null, data, label);
      if (st) parts.push(`${label} ${data} ${f2(st.cpuSend)} / ${f2(st.cpuRecv)}`);
    }
    if (parts.length) lines.push(`CPU seconds per GiB of input, sender / receiver, one unshaped veth, MTU ${mtu}: ${parts.join("; ")}.`);
    // The same on a link that holds the sender back: what waiting costs.
    const shaped: string[] = [];
    for (const [data, label] of [
      ["random", "l2pipe -0"],
      ["random", "l2pipe"],
      ["random", "socat TCP"],
      ["compressible", "l2pipe"],
    ] as [Data, string][]) {
      const st = find("b", mtu, "1 x 1 Gbit", data, label);
      if (st) shaped.push(`${label} ${data} ${f2(st.cpuSend)} / ${f2(st.cpuRecv)}`);
    }
    if (shaped.length) lines.push(`CPU seconds per GiB, sender / receiver, one 1 Gbit link, MTU ${mtu}: ${shaped.join("; ")}.`);
    const veth0 = find("a", mtu, null, "random", "l2pipe -0");
    const gbit0 = find("b", mtu, "1 x 1 Gbit", "random", "l2pipe -0");
    if (mtu === 9000 && (veth0 || gbit0)) {
      const b = CPU_BEFORE;
      lines.push(
        `CPU seconds per GiB of l2pipe -0, random, MTU 9000, sender / receiver, before (full run at ${b.commit}, not side by side) and in this run: ` +
          [
            veth0 && `one veth ${f2(b.veth.send)} / ${f2(b.veth.recv)} then, ${f2(veth0.cpuSend)} / ${f2(veth0.cpuRecv)} now`,
            gbit0 && `one 1 Gbit link ${f2(b.gbit.send)} / ${f2(b.gbit.recv)} then, ${f2(gbit0.cpuSend)} / ${f2(gbit0.cpuRecv)} now`,
          ].filter(Boolean).join("; ") + ".",
      );
    }
  }
  // 5. Codecs (group d): the adaptive default against the fixed settings and the pipelines a user
  // would type instead; data whose compressibility changes every 64 MiB.
  for (const mtu of mtus) {
    const one = "1 x 1 Gbit";
    const labels = ["l2pipe", "l2pipe --compress lz4", "l2pipe --compress zstd:1", "socat TCP", "lz4 -1 | socat | lz4 -d", "zstd -1 -T0 | socat | zstd -d"];
    const parts = labels.map((lb) => [lb, find("d", mtu, one, "compressible", lb)] as const).filter(([, st]) => st);
    if (parts.length) {
      lines.push(`Codecs, compressible data over one 1 Gbit link, MTU ${mtu}, MB/s of input (wire/input): ` +
        parts.map(([lb, st]) => `${lb} ${f0(st!.mbps.med)}${st!.wireRatio !== null ? ` (${f2(st!.wireRatio)})` : ""}`).join("; ") + ".");
    }
    const pair = ["l2pipe", "l2pipe --compress lz4", "l2pipe --compress zstd:1", "l2pipe --compress zstd:3"]
      .map((lb) => [lb, find("d", mtu, "1 + 1.5 Gbit", "compressible", lb)] as const).filter(([, st]) => st);
    if (pair.length) lines.push(`Codecs, compressible data over 1 + 1.5 Gbit, MTU ${mtu}: ${pair.map(([lb, st]) => `${lb} ${f0(st!.mbps.med)} MB/s`).join("; ")}.`);
    const changing = ["l2pipe", "l2pipe --compress lz4", "l2pipe --compress zstd:1", "l2pipe --compress zstd:3", "l2pipe -0"]
      .map((lb) => [lb, find("d", mtu, one, "changing", lb)] as const).filter(([, st]) => st);
    if (changing.length) {
      let line = `Data changing every 64 MiB (text, random, ...), one 1 Gbit link, MTU ${mtu}: ${changing.map(([lb, st]) => `${lb} ${f0(st!.mbps.med)} MB/s`).join("; ")}`;
      const auto = scenario("d", mtu, one, "changing", "l2pipe");
      const settles = (auto?.runs ?? []).flatMap((r) => r.settle ?? []);
      if (settles.length) {
        const ms = settles.map((s) => s.settleMs);
        line += `; the default's codec settled ${f0(median(ms))} ms (median, max ${f0(Math.max(...ms))}) after each change, using ` +
          ["text", "random"].map((k) => `${[...new Set(settles.filter((s) => s.kind === k).map((s) => s.codec))].join("/")} on ${k}`).join(", ");
      }
      lines.push(line + ".");
    }
  }
  // 6. The 2017 tool, as a fixed reference.
  const r = REFERENCE_2017.rows;
  const now9000 = find("a", 9000, null, "random", "l2pipe");
  const now1500 = find("a", 1500, null, "random", "l2pipe");
  const nowC = find("a", 9000, null, "compressible", "l2pipe");
  let ref =
    `2017 C tool (fixed reference from shared/reference/original-design.md, not re-measured), median MB/s, 1 GiB, one veth: random MTU 9000 ${r[2]!.medianMBps}, ` +
    `MTU 1500 ${r[0]!.medianMBps}, compressible MTU 9000 ${r[4]!.medianMBps}; its socat TCP baseline there 1600-2050 MB/s, so ~0.16-0.20 of TCP`;
  const cmp = [
    now9000 && `random MTU 9000 ${f0(now9000.mbps.med)}`,
    now1500 && `MTU 1500 ${f0(now1500.mbps.med)}`,
    nowC && `compressible MTU 9000 ${f0(nowC.mbps.med)}`,
  ].filter(Boolean);
  if (cmp.length) ref += `. l2pipe (default) in this run: ${cmp.join(", ")} (different run and machine: compare the ratios to TCP, not MB/s)`;
  lines.push(ref + ".");
  return lines;
}

// ---------------------------------------------------------------------------------------------
// The figures the benchmark exists to check, each against its target, from this run's numbers

export interface TargetCheck {
  figure: string;
  target: string;
  measured: string;
  met: boolean;
}

/** The 2017 tool's figure on one veth that l2pipe -0 is to triple. */
const FIGURE_2017_MBPS = 340;

export function checkTargets(res: BenchResults): TargetCheck[] {
  const out: TargetCheck[] = [];
  const add = (figure: string, target: string, measured: string, met: boolean) => out.push({ figure, target, measured, met });

  const l0 = statsOf(res, "a", 9000, null, "random", "l2pipe -0");
  const tcp = statsOf(res, "a", 9000, null, "random", "socat TCP");
  if (l0 && tcp) {
    const r = l0.mbps.med / tcp.mbps.med;
    add("one unshaped veth, MTU 9000, random, -0 / socat TCP", ">= 1.0x", `${f2(r)}x (${f0(l0.mbps.med)} / ${f0(tcp.mbps.med)} MB/s)`, r >= 1);
  }
  if (l0) {
    const r = l0.mbps.med / FIGURE_2017_MBPS;
    add(`the same / the 2017 tool's ${FIGURE_2017_MBPS} MB/s`, ">= 3x", `${f2(r)}x`, r >= 3);
    const worst = Math.max(l0.cpuSend, l0.cpuRecv);
    add("CPU s/GiB, one veth, -0, sender / receiver", "<= 1.5 each", `${f2(l0.cpuSend)} / ${f2(l0.cpuRecv)}`, worst <= 1.5);
  }
  for (const mtu of [9000, 1500]) {
    const bar = mtu === 9000 ? 97 : 95;
    for (const s of res.scenarios.filter((x) => x.group === "b" && x.mtu === mtu && x.data === "random" && x.tool === "l2pipe")) {
      const st = stats(s);
      if (st.ok === 0 || st.capacityPct === null) continue;
      add(`${s.linksDesc}, MTU ${mtu}, random, ${s.label}: goodput / capacity`, `>= ${bar} %`, `${f1(st.capacityPct)} %`, st.capacityPct >= bar);
    }
    const pair = statsOf(res, "c", mtu, null, "random", "l2pipe");
    if (pair && pair.capacityPct !== null) {
      add(`1 + 1.5 Gbit, MTU ${mtu}, random, default scheduling`, ">= 93 %", `${f1(pair.capacityPct)} %`, pair.capacityPct >= 93);
    }
    const lc = statsOf(res, "b", mtu, "1 x 1 Gbit", "compressible", "l2pipe");
    const tc = statsOf(res, "b", mtu, "1 x 1 Gbit", "compressible", "socat TCP");
    if (lc && tc) {
      const r = lc.mbps.med / tc.mbps.med;
      add(`compressible over 1 x 1 Gbit, MTU ${mtu}: l2pipe / socat TCP`, ">= 1.5x", `${f2(r)}x (${f0(lc.mbps.med)} / ${f0(tc.mbps.med)} MB/s)`, r >= 1.5);
    }
  }
  // Codecs: the adaptive default against what a user would type instead, and against -0.
  const one = "1 x 1 Gbit";
  const dz = statsOf(res, "d", 9000, one, "compressible", "l2pipe");
  const zp = statsOf(res, "d", 9000, one, "compressible", "zstd -1 -T0 | socat | zstd -d");
  if (dz && zp) {
    const r = dz.mbps.med / zp.mbps.med;
    add("compressible over 1 x 1 Gbit, MTU 9000: l2pipe / zstd -1 -T0 | socat | zstd -d", ">= 1.0x", `${f2(r)}x (${f0(dz.mbps.med)} / ${f0(zp.mbps.med)} MB/s)`, r >= 1);
  }
  const d15 = statsOf(res, "d", 1500, one, "compressible", "l2pipe");
  const lp = statsOf(res, "d", 1500, one, "compressible", "lz4 -1 | socat | lz4 -d");
  if (d15 && lp) {
    const r = d15.mbps.med / lp.mbps.med;
    add("compressible over 1 x 1 Gbit, MTU 1500: l2pipe / lz4 -1 | socat | lz4 -d", ">= 0.85x", `${f2(r)}x (${f0(d15.mbps.med)} / ${f0(lp.mbps.med)} MB/s)`, r >= 0.85);
  }
  for (const [data, bar] of [["compressible", 0.95], ["random", 0.97]] as const) {
    for (const s of res.scenarios.filter((x) => x.data === data && x.label === "l2pipe" && x.group !== "d")) {
      const zero = statsOf(res, s.group, s.mtu, s.linksDesc, data, "l2pipe -0");
      const def = stats(s);
      if (!zero || def.ok === 0) continue;
      // Only where -0 can be the bound: compressible data over a shaped link is faster compressed.
      if (data === "compressible" && s.capacityMbit !== null) continue;
      const r = def.mbps.med / zero.mbps.med;
      add(`${s.linksDesc}, MTU ${s.mtu}, ${data}: default / -0`, `>= ${bar}x`, `${f2(r)}x (${f0(def.mbps.med)} / ${f0(zero.mbps.med)} MB/s)`, r >= bar);
    }
  }
  const rss = res.scenarios.filter((s) => s.tool === "l2pipe").map(stats).filter((st) => st.ok > 0);
  if (rss.length) {
    const peak = Math.max(...rss.map((st) => Math.max(st.rssSend, st.rssRecv)));
    add("peak RSS of either side, default memory", "< 512 MiB", `${f0(peak)} MiB`, peak < 512);
  }
  return out;
}

/** How far apart the runs of one scenario were, max / min MB/s, over the scenarios of this run. */
function spreadText(res: BenchResults): string {
  const spreads = res.scenarios
    .map((s) => s.runs.filter((r) => r.ok).map((r) => r.mbps))
    .filter((v) => v.length > 1)
    .map((v) => Math.max(...v) / Math.min(...v));
  if (spreads.length === 0) return "";
  return `in this run the fastest and slowest run of one scenario were ${f2(median(spreads))}x apart in the median scenario and up to ${f2(Math.max(...spreads))}x.`;
}

// ---------------------------------------------------------------------------------------------
// Table (terminal) and Markdown

function topoTitle(s: Scenario): string {
  return `${s.group}) MTU ${s.mtu}, ${s.linksDesc}`;
}

function groupByTopo(res: BenchResults): [string, Scenario[]][] {
  const m = new Map<string, Scenario[]>();
  for (const s of res.scenarios) {
    const k = topoTitle(s);
    (m.get(k) ?? m.set(k, []).get(k)!).push(s);
  }
  return [...m];
}

interface Row {
  cells: string[];
  failed: boolean;
}

const HEAD = [
  "data",
  "tool",
  "MB/s med",
  "min-max",
  "% cap",
  "own MB/s",
  "CPU s/GiB snd",
  "rcv",
  "RSS MiB snd",
  "rcv",
  "resent %",
  "wire/in",
  "runs ok",
];

function rowFor(s: Scenario): Row {
  const st = stats(s);
  const failed = st.ok < st.n;
  if (st.ok === 0) {
    return { cells: [s.data, s.label, "FAILED", "-", "-", "-", "-", "-", "-", "-", "-", "-", `0/${st.n}`], failed };
  }
  return {
    cells: [
      s.data,
      s.label,
      f1(st.mbps.med),
      `${f1(st.mbps.min)}-${f1(st.mbps.max)}`,
      st.capacityPct !== null ? f0(st.capacityPct) : "-",
      st.selfMbps !== null ? f1(st.selfMbps) : "-",
      f2(st.cpuSend),
      f2(st.cpuRecv),
      f0(st.rssSend),
      f0(st.rssRecv),
      st.resentPct !== null ? f2(st.resentPct) : "-",
      st.wireRatio !== null ? f2(st.wireRatio) : "-",
      `${st.ok}/${st.n}${failed ? " FAILED" : ""}`,
    ],
    failed,
  };
}

export function renderTable(res: BenchResults): string {
  const out: string[] = [];
  out.push("Summary:");
  for (const l of res.summary) out.push(`  - ${l}`);
  out.push("");
  const checks = checkTargets(res);
  if (checks.length) {
    out.push(`Against the targets (${checks.filter((c) => c.met).length} of ${checks.length} met):`);
    for (const c of checks) out.push(`  ${c.met ? "met    " : "NOT MET"}  ${c.figure}: ${c.measured} (target ${c.target})`);
    out.push("");
  }
  const all: (Row | string)[] = [];
  for (const [title, list] of groupByTopo(res)) {
    all.push(title);
    for (const s of list) all.push(rowFor(s));
  }
  all.push("2017 C tool: fixed reference, not re-measured (shared/reference/original-design.md; MB/s best in min-max)");
  for (const r of REFERENCE_2017.rows) {
    const cells = HEAD.map(() => "-");
    cells[0] = r.data;
    cells[1] = `2017 ${r.compressors === "-0" ? "-0" : "(4 compr.)"} MTU ${r.mtu} x${r.links}`;
    cells[2] = f1(r.medianMBps);
    cells[3] = `best ${r.bestMBps}`;
    cells[12] = "3/3";
    all.push({ cells, failed: false });
  }
  const rows = all.filter((r): r is Row => typeof r !== "string");
  const w = HEAD.map((h, i) => Math.max(h.length, ...rows.map((r) => r.cells[i]!.length)));
  const fmt = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join("  ");
  out.push(fmt(HEAD));
  for (const r of all) {
    if (typeof r === "string") out.push(`-- ${r}`);
    else out.push(r.failed ? `${fmt(r.cells)}  <<< FAILED RUNS` : fmt(r.cells));
  }
  out.push("");
  out.push(
    `MB/s = input MB (1e6 B) / wall time from sender start to both exits; own MB/s = l2pipe's own "done in" time; ` +
      `% cap = of the sum of the htb rates; ${res.meta.runs} runs, ${res.meta.inputMiB} MiB each, ${res.meta.mode} mode.`,
  );
  return out.join("\n");
}

export function renderMarkdown(res: BenchResults): string {
  const m = res.meta;
  const o: string[] = [];
  o.push("# Benchmarks");
  o.push("");
  o.push(
    `Generated by \`bun run bench${m.mode === "quick" ? " --quick" : ""}\` (scripts/bench.ts) on ${m.date.slice(0, 16).replace("T", " ")} UTC in ${f0(m.durationS / 60)} min: ` +
      `${m.mode} mode, ${m.inputMiB} MiB inputs, median of ${m.runs} runs per scenario. Do not edit by hand: rerun the script. ` +
      `Raw numbers: [bench-results.json](bench-results.json).`,
  );
  o.push("");
  const failed = res.scenarios.flatMap((s) => s.runs.filter((r) => !r.ok).map((r) => `${s.id}: ${r.failure}`));
  if (failed.length) {
    o.push(`> **FAILED: ${failed.length} run(s) failed (wrong sha256, non-zero exit or timeout); their scenarios' numbers use only the good runs.**`);
    o.push(">");
    for (const f of failed) o.push(`> - ${f}`);
    o.push("");
  }
  o.push("## Summary");
  o.push("");
  for (const l of res.summary) o.push(`- ${l}`);
  o.push("");
  const checks = checkTargets(res);
  if (checks.length) {
    o.push("## Against the targets");
    o.push("");
    o.push(`${checks.filter((c) => c.met).length} of ${checks.length} met in this run (medians; \`-m\` below 96 MiB is checked by test/e2e-compress.test.ts).`);
    o.push("");
    o.push("| figure | target | this run | |");
    o.push("|---|---|---|---|");
    for (const c of checks) o.push(`| ${c.figure} | ${c.target} | ${c.measured} | ${c.met ? "met" : "not met"} |`);
    o.push("");
  }
  o.push("![median MB/s per scenario, bars from min to max](bench-chart.svg)");
  o.push("");
  o.push("## How it was measured");
  o.push("");
  o.push(
    `- Machine: ${m.host.cpu}, **${m.host.cores} cores**, ${m.host.memGiB} GiB, kernel ${m.host.kernel}; load average ${m.host.loadavgBefore.map(f2).join(" ")} before, ${m.host.loadavgAfter.map(f2).join(" ")} after. ` +
      "Sender, receiver and the kernel's veth work share these 2 cores, and the machine is shared with other work and noisy: " +
      `${spreadText(res)} ` +
      "Trust the ratios between tools measured side by side in the same run more than any single figure.",
  );
  o.push(
    "- Each topology (network namespaces joined by veth pairs, created by the script through test/support/netns.ts) carries every tool in turn: " +
      "run 1 of each tool, then run 2, ..., in rotated order, on the same veths and the same input files (in tmpfs). Shaped links use an htb qdisc on both ends' egress.",
  );
  o.push(
    "- htb in this VM arms a timer for every frame of a backlogged class, and each frame leaves from a timer interrupt: a bare sending loop used 12.3 µs of CPU per 1514-byte frame " +
      "through htb against 2.9 µs unshaped (docs/PERFORMANCE-NOTES.md). At MTU 1500 that is a whole core at ~83,000 frames/s, about 1 Gbit, so any raw-frame sender meets " +
      "the same ceiling there; the MTU 1500 figures over several shaped links measure this rig, not the protocol.",
  );
  o.push(
    "- **MB/s** = input bytes / 10^6 / wall time measured by the script from the sender's start until both sender and receiver have exited (the receiver is started first and the sender only once its sockets are open). " +
      "**own MB/s** is l2pipe's own figure: input bytes / the sender's \"done in X s\" printed by `-v` (it excludes the process start). " +
      "Median of the runs, with min-max.",
  );
  o.push(
    `- **CPU s/GiB**: user + system seconds per GiB of input, each side separately; **RSS**: peak resident set. ${m.measurement.cpuAndRss}. ` +
      "l2pipe runs as `ip netns exec NS ... l2pipe`, which execs, so the measured process is l2pipe itself (all its Worker threads included).",
  );
  o.push(
    "- **% cap**: MB/s against the sum of the htb rates (1 Gbit = 125 MB/s). htb counts whole Ethernet frames, so header overhead caps goodput below 100%: " +
      "l2pipe carries 1470 payload bytes per 1514-byte frame at MTU 1500 (97%); TCP 1448 (96%).",
  );
  o.push(
    "- Every run checks the sha256 of the output against the input and both exit codes; a mismatch marks the run **FAILED** (here and in the JSON) and the script exits 1. " +
      "**resent %** = l2pipe's frames resent / frames sent; **wire/in** = l2pipe's wire bytes / input bytes (lz4 compression).",
  );
  o.push(
    `- Baselines: \`socat -b 1048576 -u\` over TCP between 10.77.1.1 and 10.77.1.2 on link 0 (addresses only inside the benchmark's namespaces; veth offloads at their defaults; 1 MiB blocks, as socat's default 8 KiB blocks make its syscalls, not TCP, the limit at ~300 MB/s here), and \`lz4 -1 -c | socat\` / \`socat | lz4 -d -c\` for compressible data. ` +
      `Versions: ${Object.entries(m.versions).map(([k, v]) => `${k} ${v}`).join(", ")}.`,
  );
  o.push(
    "- Inputs: random = AES-CTR keystream (incompressible); compressible = tar of /usr cut to size (lz4 -1 ratio ~0.55 here).",
  );
  o.push("");
  o.push("## All scenarios");
  o.push("");
  for (const [title, list] of groupByTopo(res)) {
    o.push(`### ${title}`);
    o.push("");
    o.push(`| ${HEAD.join(" | ")} |`);
    o.push(`|${HEAD.map((_, i) => (i < 2 ? "---" : "---:")).join("|")}|`);
    for (const s of list) {
      const r = rowFor(s);
      const cells = r.cells.map((c) => c.replaceAll("|", "\\|"));
      if (r.failed) cells[12] = `**${cells[12]}**`;
      o.push(`| ${cells.join(" | ")} |`);
    }
    const shares = list
      .map((s) => [s, stats(s).linkShare] as const)
      .filter(([s, sh]) => sh && s.rates.length > 1)
      .map(([s, sh]) => `${s.data} ${s.label}: ${sh!.map((x) => `${f0(100 * x)}%`).join(" / ")}`);
    if (shares.length) {
      o.push("");
      o.push(`Share of the wire bytes per link (links ${list[0]!.rates.map((r) => (r ? `${r} Mbit` : "unshaped")).join(" / ")}): ${shares.join("; ")}.`);
    }
    o.push("");
  }
  o.push("## The 2017 C tool (fixed reference)");
  o.push("");
  o.push(
    `Not re-measured (that tool is not here): the figures of ${REFERENCE_2017.source}, measured on a machine like this one with sender and receiver sharing 2 cores, 1 GiB, best / median of 3. ` +
      `Its socat TCP baseline on the same veths: ${REFERENCE_2017.tcpMBps} MB/s; ${REFERENCE_2017.lz4PipeMBps} MB/s.`,
  );
  o.push("");
  o.push("| data | MTU | links | compressors | MB/s best | MB/s median |");
  o.push("|---|---:|---:|---|---:|---:|");
  for (const r of REFERENCE_2017.rows) o.push(`| ${r.data} | ${r.mtu} | ${r.links} | ${r.compressors} | ${r.bestMBps} | ${r.medianMBps} |`);
  o.push("");
  o.push("## Reproduce");
  o.push("");
  o.push("```sh");
  o.push("bun run bench              # full: 1 GiB inputs, MTU 9000 and 1500, 3 runs (~20-30 min)");
  o.push("bun run bench --quick      # 256 MiB, MTU 9000, fewer scenarios (~2 min)");
  o.push("bun run bench --runs 5 --mtu 9000 --groups a --only random   # any subset");
  o.push("```");
  o.push("");
  o.push(
    "Needs root, iproute2, tc, socat and lz4; uses GNU `/usr/bin/time` when present, else wait4 rusage for CPU and /proc polling for peak RSS (`--no-gnu-time` forces that). " +
      "`--no-write` leaves the docs alone; `--no-build` / `--binary PATH` skip the build.",
  );
  o.push("");
  return o.join("\n");
}

// ---------------------------------------------------------------------------------------------
// SVG chart: one section per topology, bars = median MB/s, whiskers = min-max; unshaped and shaped
// sections each have their own scale (TCP on an unshaped veth is ten times anything shaped).

const COLORS: Record<string, string> = {
  "l2pipe -0": "#1f77b4",
  l2pipe: "#2ca02c",
  "l2pipe -a 2.3": "#17becf",
  "socat TCP": "#7f7f7f",
  "lz4 -1 | socat | lz4 -d": "#9467bd",
  "zstd -1 -T0 | socat | zstd -d": "#8c564b",
  "l2pipe --compress lz4": "#bcbd22",
  "l2pipe --compress zstd:1": "#e377c2",
  "l2pipe --compress zstd:3": "#ff7f0e",
};

function esc(s: string): string {
  return s.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

function niceCeil(x: number): number {
  if (!(x > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  for (const k of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (k * p >= x) return k * p;
  return 10 * p;
}

export function renderSvg(res: BenchResults): string {
  const W = 960;
  const LABEL = 300;
  const BAR_W = 540;
  const ROW = 18;
  const x0 = LABEL + 10;
  const groups = groupByTopo(res);
  const scaleMax = (shaped: boolean) =>
    niceCeil(
      Math.max(
        1,
        ...res.scenarios
          .filter((s) => (s.capacityMbit !== null) === shaped)
          .flatMap((s) => [...s.runs.filter((r) => r.ok).map((r) => r.mbps), (s.capacityMbit ?? 0) / 8]),
      ),
    );
  const maxUnshaped = scaleMax(false);
  const maxShaped = scaleMax(true);
  const parts: string[] = [];
  let y = 40;
  parts.push(
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">l2pipe vs socat TCP: median MB/s of input (bars), min-max (whiskers), ${res.meta.inputMiB} MiB, ${res.meta.runs} runs</text>`,
  );
  for (const [title, list] of groups) {
    const shaped = list[0]!.capacityMbit !== null;
    const max = shaped ? maxShaped : maxUnshaped;
    const sx = (v: number) => x0 + (BAR_W * Math.min(v, max)) / max;
    y += 8;
    parts.push(`<text x="8" y="${y + 12}" font-size="13" font-weight="bold">${esc(title)}</text>`);
    y += 18;
    const top = y;
    const cap = list[0]!.capacityMbit;
    if (cap) {
      // Behind the bars and their labels.
      const cx = sx(cap / 8);
      parts.push(`<line x1="${cx}" y1="${top - 2}" x2="${cx}" y2="${top + list.length * ROW + 2}" stroke="#d62728" stroke-dasharray="4,3"/>`);
      const right = cx + 100 > W;
      parts.push(`<text x="${right ? cx - 3 : cx + 3}" y="${top - 4}" font-size="10" fill="#d62728"${right ? ' text-anchor="end"' : ""}>capacity ${f0(cap / 8)} MB/s</text>`);
    }
    const ticks = 5;
    for (let i = 0; i <= ticks; i++) {
      const v = (max * i) / ticks;
      parts.push(`<line x1="${sx(v)}" y1="${top}" x2="${sx(v)}" y2="${top + list.length * ROW}" stroke="#ddd"/>`);
    }
    for (const s of list) {
      const st = stats(s);
      const color = COLORS[s.label] ?? "#d62728";
      parts.push(`<text x="${LABEL}" y="${y + 13}" font-size="12" text-anchor="end">${esc(`${s.data} · ${s.label}`)}</text>`);
      if (st.ok === 0) {
        parts.push(`<text x="${x0 + 4}" y="${y + 13}" font-size="12" font-weight="bold" fill="#d62728">FAILED</text>`);
      } else {
        parts.push(`<rect x="${x0}" y="${y + 3}" width="${Math.max(1, sx(st.mbps.med) - x0).toFixed(1)}" height="${ROW - 6}" fill="${color}" opacity="${s.data === "compressible" ? 0.65 : 1}"/>`);
        const wy = y + ROW / 2;
        parts.push(`<line x1="${sx(st.mbps.min).toFixed(1)}" y1="${wy}" x2="${sx(st.mbps.max).toFixed(1)}" y2="${wy}" stroke="#000" stroke-width="1"/>`);
        for (const v of [st.mbps.min, st.mbps.max]) parts.push(`<line x1="${sx(v).toFixed(1)}" y1="${wy - 4}" x2="${sx(v).toFixed(1)}" y2="${wy + 4}" stroke="#000"/>`);
        const tag = `${f0(st.mbps.med)}${st.capacityPct !== null ? ` (${f0(st.capacityPct)}%)` : ""}${st.ok < st.n ? ` ${st.n - st.ok} FAILED` : ""}`;
        parts.push(`<text x="${(sx(st.mbps.max) + 6).toFixed(1)}" y="${y + 13}" font-size="11" fill="${st.ok < st.n ? "#d62728" : "#333"}">${esc(tag)}</text>`);
      }
      y += ROW;
    }
    for (let i = 0; i <= ticks; i++) {
      const v = (max * i) / ticks;
      parts.push(`<text x="${sx(v)}" y="${y + 12}" font-size="10" text-anchor="middle" fill="#666">${f0(v)}</text>`);
    }
    y += 18;
  }
  y += 8;
  for (const line of [
    `MB/s = input bytes / wall time from the sender's start until both sides exited; % = of the sum of the htb rates (dashed line).`,
    `Unshaped sections share one scale (0-${maxUnshaped} MB/s), shaped ones another (0-${maxShaped}). ${res.meta.date.slice(0, 10)}, ${res.meta.host.cores} shared cores: a noisy machine, compare tools within a section.`,
  ]) {
    parts.push(`<text x="8" y="${y}" font-size="10" fill="#666">${esc(line)}</text>`);
    y += 13;
  }
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" viewBox="0 0 ${W} ${y}" font-family="Helvetica, Arial, sans-serif">\n` +
    `<rect width="100%" height="100%" fill="#fff"/>\n` +
    parts.join("\n") +
    "\n</svg>\n"
  );
}
