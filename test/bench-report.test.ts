// The benchmark's target checks: computed from the run's numbers, met or not by the right side
// of each bar.
import { describe, expect, test } from "bun:test";
import { checkTargets, CPU_BEFORE, summarize } from "../scripts/bench-report";
import type { BenchResults, Data, RunResult, Scenario, Tool } from "../scripts/bench-types";

function run(mbps: number, cpu = 1, rss = 100): RunResult {
  const side = { code: 0, cpuS: cpu, cpuSPerGiB: cpu, rssMiB: rss, method: "gnu-time" as const };
  return {
    ok: true, failure: null, wallS: 1, mbps, selfS: null, selfMbps: null, wireRatio: null, resentPct: null,
    linkShare: null, sha256Ok: true, sender: side, receiver: side,
  };
}

function scenario(group: "a" | "b" | "c", mtu: number, rates: (number | null)[], linksDesc: string, data: Data, tool: Tool, label: string, runs: RunResult[]): Scenario {
  const capacityMbit = rates.every((r) => r !== null) ? rates.reduce((a, r) => a! + r!, 0) : null;
  return { id: `${group} ${mtu} ${linksDesc} ${data} ${label}`, group, mtu, rates, linksDesc, capacityMbit, data, tool, args: [], label, runs };
}

function results(scenarios: Scenario[]): BenchResults {
  return { meta: {} as BenchResults["meta"], summary: [], scenarios };
}

describe("checkTargets", () => {
  test("ratios, goodput and CPU are judged against their bars", () => {
    const checks = checkTargets(results([
      scenario("a", 9000, [null], "1 veth, unshaped", "random", "l2pipe", "l2pipe -0", [run(1100, 1.4), run(1000, 1.4), run(1200, 1.6)]),
      scenario("a", 9000, [null], "1 veth, unshaped", "random", "tcp", "socat TCP", [run(1050), run(1000), run(900)]),
      // 1 Gbit = 125 MB/s: 121.3 is 97.0 %, 121.2 is 96.96 %
      scenario("b", 9000, [1000], "1 x 1 Gbit", "random", "l2pipe", "l2pipe -0", [run(121.3)]),
      scenario("b", 9000, [1000, 1000], "2 x 1 Gbit", "random", "l2pipe", "l2pipe -0", [run(242.4)]),
      scenario("c", 9000, [1000, 1500], "1 + 1.5 Gbit", "random", "l2pipe", "l2pipe", [run(290.7)]),
      scenario("b", 9000, [1000], "1 x 1 Gbit", "compressible", "l2pipe", "l2pipe", [run(180)]),
      scenario("b", 9000, [1000], "1 x 1 Gbit", "compressible", "tcp", "socat TCP", [run(120)]),
    ]));
    const by = (prefix: string) => checks.find((c) => c.figure.startsWith(prefix))!;
    expect(by("one unshaped veth").met).toBe(true); // 1100 / 1000
    expect(by("one unshaped veth").measured).toContain("1.10x");
    expect(by("the same / the 2017").met).toBe(true); // 1100 / 340 = 3.2
    expect(by("CPU s/GiB").met).toBe(true); // medians 1.4 / 1.4
    expect(by("1 x 1 Gbit, MTU 9000").met).toBe(true);
    expect(by("2 x 1 Gbit, MTU 9000").met).toBe(false); // 96.96 %
    expect(by("1 + 1.5 Gbit, MTU 9000").met).toBe(true); // 290.7 / 312.5 = 93.0 %
    expect(by("compressible over").met).toBe(true); // 1.5x
    expect(by("peak RSS").met).toBe(true);
  });

  test("a slow run, high CPU or a missing baseline", () => {
    const checks = checkTargets(results([
      scenario("a", 9000, [null], "1 veth, unshaped", "random", "l2pipe", "l2pipe -0", [run(600, 1.2, 600)]),
      scenario("a", 9000, [null], "1 veth, unshaped", "random", "tcp", "socat TCP", [run(1000)]),
      scenario("b", 1500, [1000], "1 x 1 Gbit", "random", "l2pipe", "l2pipe -0", [run(118)]), // 94.4 %: bar 95
    ]));
    const by = (prefix: string) => checks.find((c) => c.figure.startsWith(prefix));
    expect(by("one unshaped veth")!.met).toBe(false);
    expect(by("the same / the 2017")!.met).toBe(false); // 1.76x
    expect(by("1 x 1 Gbit, MTU 1500")!.met).toBe(false);
    expect(by("peak RSS")!.met).toBe(false); // 600 MiB
    expect(by("compressible over")).toBeUndefined(); // no such scenarios in this run
  });
});

describe("summarize", () => {
  test("CPU per side of -0 now, beside the fixed figures from before the work on CPU per byte", () => {
    const lines = summarize(results([
      scenario("a", 9000, [null], "1 veth, unshaped", "random", "l2pipe", "l2pipe -0", [run(1100, 0.8), run(1000, 0.9), run(1200, 1.0)]),
      scenario("b", 9000, [1000], "1 x 1 Gbit", "random", "l2pipe", "l2pipe -0", [run(121, 1.3)]),
    ]));
    const line = lines.find((l) => l.startsWith("CPU seconds per GiB of l2pipe -0"));
    expect(line).toContain(`one veth ${CPU_BEFORE.veth.send.toFixed(2)} / ${CPU_BEFORE.veth.recv.toFixed(2)} then, 0.90 / 0.90 now`);
    expect(line).toContain("one 1 Gbit link 1.61 / 2.66 then, 1.30 / 1.30 now");
  });
});
