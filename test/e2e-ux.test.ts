// What a person at the console sees, on the real kernel: -p progress, the -v summary and the
// --stats-json files agreeing with the bytes that moved, silence when nothing was asked for, and
// the failures a user meets (no capability, a down device, no receiver, a receiver that dies)
// each with its one-line message and exit code.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, copyFileSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { cleanupAll, createTopology, makeCompressibleFile, makeRandomFile, sha256File, type Topology } from "./support/netns";
import { BINARY, requireBinary, scratchDir, shellQuote, transfer } from "./support/transfer";
import type { RunStats } from "../src/shell/report";

const scratch = scratchDir();
afterAll(async () => {
  await cleanupAll();
  scratch.remove();
});
beforeAll(() => requireBinary());

const q = shellQuote;

/** Runs checks on a side's stderr; a failure also prints that stderr, the evidence. */
function about(what: string, text: string, checks: () => void): void {
  try {
    checks();
  } catch (e) {
    console.error(`--- ${what}:\n${text}---`);
    throw e;
  }
}
const progressLine = (role: string) => new RegExp(`^l2pipe ${role}: [\\d.]+ (B|KiB|MiB|GiB), [\\d.]+ MB/s now, `, "gm");

describe("reporting", () => {
  // Two links of 12 Mbit/s: 8 MiB of incompressible data take ~2.8 s, long enough for periodic
  // progress lines at one per second.
  let topo: Topology;
  beforeAll(async () => {
    topo = await createTopology([{ rateMbit: 12 }, { rateMbit: 12 }]);
  });
  afterAll(() => topo.cleanup());

  test("-p -v --stats-json on both sides: numbers that add up, progress on a non-tty stderr", async () => {
    const bytes = 8 << 20;
    const input = `${scratch.dir}/report-in`;
    await makeRandomFile(input, bytes);
    const sJson = `${scratch.dir}/sender.json`;
    const rJson = `${scratch.dir}/receiver.json`;
    const r = await transfer(topo, {
      input,
      senderArgs: ["-p", "-v", "--stats-json", sJson],
      receiverArgs: ["-p", "-v", "--stats-json", rJson],
      timeoutMs: 30_000,
    });
    expect({ s: r.sender.code, r: r.receiver.code }).toEqual({ s: 0, r: 0 });
    expect(r.outSha).toBe(r.inSha);

    const s = (await Bun.file(sJson).json()) as RunStats;
    const v = (await Bun.file(rJson).json()) as RunStats;
    expect(s).toMatchObject({ role: "send", ok: true, error: null, inputBytes: bytes });
    expect(v).toMatchObject({ role: "receive", ok: true, error: null, inputBytes: bytes });
    // Incompressible data: the wire stream is the input plus record headers.
    expect(s.wireBytes).toBeGreaterThanOrEqual(bytes);
    expect(s.wireBytes).toBeLessThan(bytes * 1.01);
    expect(v.wireBytes).toBe(s.wireBytes);
    expect(s.links.map((l) => l.device)).toEqual(topo.devsA);
    expect(v.links.map((l) => l.device)).toEqual(topo.devsB);
    const sent = s.links.reduce((sum, l) => sum + (l.bytesSent ?? 0), 0);
    const received = v.links.reduce((sum, l) => sum + (l.bytesReceived ?? 0), 0);
    // Resent bytes count again on the sender; the receiver counts each byte once.
    expect(sent).toBeGreaterThanOrEqual(s.wireBytes);
    expect(received).toBe(v.wireBytes);
    for (const l of s.links) expect(l.bytesSent).toBeGreaterThan(bytes / 4);
    // The premise of the progress check: the run lasted more than two ticks.
    expect(s.elapsedMs).toBeGreaterThan(2000);

    for (const [role, side] of [["send", r.sender], ["receive", r.receiver]] as const) about(`${role} stderr`, side.stderr, () => {
      const err = side.stderr;
      // Not a terminal: whole lines, no carriage returns or escape sequences.
      expect(err).not.toMatch(/[\r\x1b]/);
      // At least one periodic line besides the final one, and the final one at 100%.
      const lines = err.match(progressLine(role)) ?? [];
      expect(lines.length).toBeGreaterThanOrEqual(2);
      expect(err).toMatch(new RegExp(`^l2pipe ${role}: 8\\.0 MiB, .* MB/s avg, wire 8\\.0 MiB`, "m"));
      // The -v summary, per link, after the progress lines.
      expect(err).toMatch(new RegExp(`^l2pipe ${role}: done in [\\d.]+ s: ${bytes} bytes \\(8\\.0 MiB\\) (read from stdin|written to stdout)`, "m"));
      for (const d of role === "send" ? topo.devsA : topo.devsB) expect(err).toContain(`  ${d}: up`);
      expect(err.indexOf(" done in ")).toBeGreaterThan(err.lastIndexOf("MB/s now"));
      // No error line.
      expect(err).not.toMatch(/^l2pipe: /m);
    });
    // The sender's lines follow what is on the wire, not what it has read ahead from stdin: the
    // first periodic one is well short of the whole stream.
    const first = /^l2pipe send: ([\d.]+) (KiB|MiB)/m.exec(r.sender.stderr)!;
    expect(Number(first[1]) * (first[2] === "MiB" ? 1 << 20 : 1 << 10)).toBeLessThan(bytes * 0.75);
  });

  test("-p on a terminal: one line rewritten in place, never wider than the terminal", async () => {
    const bytes = 6 << 20;
    const input = `${scratch.dir}/tty-in`;
    const out = `${input}.out`;
    await makeRandomFile(input, bytes);
    const receiver = topo.spawn(topo.nsB, ["sh", "-c", `exec ${q(BINARY)} -r ${topo.devsB.join(" ")} > ${q(out)}`], {
      stdout: "ignore",
      stderr: "pipe",
    });
    // script(1) gives the sender a pseudo-terminal of 80 columns as stderr.
    const cmd = `stty cols 80 rows 24; exec ${q(BINARY)} -s -p --size ${bytes} ${topo.devsA.join(" ")} < ${q(input)}`;
    const sender = await topo.exec(topo.nsA, ["script", "-qec", cmd, "/dev/null"], { timeoutMs: 30_000 });
    expect({ s: sender.code, r: await receiver.exited }).toEqual({ s: 0, r: 0 });
    expect(await sha256File(out)).toBe(await sha256File(input));
    const screen = sender.stdout;
    about("terminal", JSON.stringify(screen) + "\n", () => {
    // Every update starts at column 0 and clears the rest of the row.
    const updates = screen.split("\r").filter((u) => u.startsWith("l2pipe send: "));
    expect(updates.length).toBeGreaterThanOrEqual(3);
    for (const u of updates) {
      const text = u.replace("\x1b[K", "").replace(/\n$/, "");
      expect(u).toContain("\x1b[K");
      expect(text.length).toBeLessThan(80);
    }
    // The last update is the whole stream, and the cursor then moves to a fresh line.
    expect(screen).toMatch(/l2pipe send: 6\.0 MiB, [^\r\n]*100\.0%, ETA 0 s\x1b\[K\r?\n$/);
    expect(screen).not.toMatch(/^l2pipe: /m);
    });
  });

  test("without -p or -v a successful run prints nothing", async () => {
    const input = `${scratch.dir}/quiet-in`;
    await makeCompressibleFile(input, 1 << 20);
    const r = await transfer(topo, { input, timeoutMs: 20_000 });
    expect({ s: r.sender.code, r: r.receiver.code }).toEqual({ s: 0, r: 0 });
    expect(r.outSha).toBe(r.inSha);
    expect(r.sender.stderr).toBe("");
    expect(r.receiver.stderr).toBe("");
  });
});

test("--size 64M -p shows a percentage and an ETA on both sides", async () => {
  // 200 Mbit/s: 64 MiB take ~2.7 s.
  const topo = await createTopology([{ rateMbit: 200 }]);
  try {
    const input = `${scratch.dir}/size-in`;
    await makeRandomFile(input, 64 << 20);
    const args = ["-p", "--size", "64M"];
    const r = await transfer(topo, { input, senderArgs: args, receiverArgs: args, timeoutMs: 30_000 });
    expect({ s: r.sender.code, r: r.receiver.code }).toEqual({ s: 0, r: 0 });
    expect(r.outSha).toBe(r.inSha);
    for (const [role, side] of [["send", r.sender], ["receive", r.receiver]] as const) about(`${role} stderr`, side.stderr, () => {
      const shown = [...side.stderr.matchAll(/([\d.]+)% of 64\.0 MiB, ETA (\d+ s|\d+:\d\d)/g)].map((m) => Number(m[1]));
      // Some line while it ran (below 100%), the last one at 100%.
      expect({ role, live: shown.some((p) => p > 0 && p < 100) }).toEqual({ role, live: true });
      expect(shown.at(-1)).toBe(100);
      // Percentages only go up.
      expect(shown).toEqual([...shown].sort((x, y) => x - y));
      // An ETA while it ran that is neither zero nor absurd.
      const etas = [...side.stderr.matchAll(/ETA (\d+) s/g)].map((m) => Number(m[1]));
      expect(etas.some((e) => e >= 1 && e <= 10)).toBe(true);
    });
  } finally {
    await topo.cleanup();
  }
});

describe("failures a user meets", () => {
  let topo: Topology;
  beforeAll(async () => {
    topo = await createTopology([{ rateMbit: 50 }, { rateMbit: 50 }]);
  });
  afterAll(() => topo.cleanup());

  describe("an unprivileged user", () => {
    const user = ensureUser();
    // A copy of the binary and the data where that user can read them; the capability goes
    // on the copy only.
    let dir = "";
    let bin = "";
    beforeAll(() => {
      dir = mkdtempSync(`${scratch.dir}/user-`);
      chmodSync(scratch.dir, 0o755);
      chmodSync(dir, 0o755);
      bin = `${dir}/l2pipe`;
      copyFileSync(BINARY, bin);
      chmodSync(bin, 0o755);
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    const asUser = (cmd: string[]) => ["setpriv", `--reuid=${user.name}`, `--regid=${user.group}`, "--clear-groups", ...cmd];

    test("without CAP_NET_RAW: exit 3 and how to grant it", async () => {
      for (const [ns, args] of [[topo.nsA, ["-s", "-w", "1", topo.devsA[0]!]], [topo.nsB, ["-r", "-w", "1", topo.devsB[0]!]]] as const) {
        const r = await topo.exec(ns, asUser([bin, ...args]), { timeoutMs: 10_000 });
        expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 3, stderr: expect.stringMatching(/^l2pipe: [^\n]+\n$/) });
        expect(r.stderr).toMatch(/CAP_NET_RAW|cap_net_raw/i);
        expect(r.stderr).toMatch(/setcap cap_net_raw\+ep/);
      }
    });

    const setcap = ensureSetcap();
    test.skipIf(!setcap.ok)(`with setcap cap_net_raw+ep on the binary: a real transfer${setcap.ok ? "" : ` (skipped: ${setcap.why})`}`, async () => {
      const set = Bun.spawnSync(["setcap", "cap_net_raw+ep", bin], { stderr: "pipe" });
      expect(set.exitCode).toBe(0);
      expect(Bun.spawnSync(["getcap", bin]).stdout.toString()).toMatch(/cap_net_raw[=+]ep/);
      const input = `${dir}/in`;
      const out = `${dir}/out`;
      await makeCompressibleFile(input, 6 << 20);
      chmodSync(input, 0o644);
      // The shells (root) open the files; the binary runs as the user.
      const receiver = topo.spawn(topo.nsB, ["sh", "-c", `exec ${asUser([bin, "-r", ...topo.devsB]).map(q).join(" ")} > ${q(out)}`], {
        stdout: "ignore",
        stderr: "pipe",
      });
      const sender = await topo.exec(topo.nsA, ["sh", "-c", `exec ${asUser([bin, "-s", ...topo.devsA]).map(q).join(" ")} < ${q(input)}`], {
        timeoutMs: 30_000,
      });
      const rCode = await receiver.exited;
      const rErr = await new Response(receiver.stderr).text();
      expect({ s: sender.code, r: rCode, sErr: sender.stderr, rErr }).toEqual({ s: 0, r: 0, sErr: "", rErr: "" });
      expect(await sha256File(out)).toBe(await sha256File(input));
    });
  });

  test("a device that is down: exit 2, naming it", async () => {
    const t = await createTopology([{}, {}]);
    try {
      await t.exec(t.nsA, ["ip", "link", "set", "dev", t.devsA[1]!, "down"]);
      const r = await t.exec(t.nsA, [BINARY, "-s", "-w", "1", ...t.devsA], { timeoutMs: 10_000 });
      expect(r).toEqual({ code: 2, stdout: "", stderr: `l2pipe: device ${t.devsA[1]} is down (ip link set ${t.devsA[1]} up)\n` });
    } finally {
      await t.cleanup();
    }
  });

  test("a sender with no receiver and -w 1: exit 4 within 2 s, naming the devices", async () => {
    const t0 = performance.now();
    const r = await topo.exec(topo.nsA, [BINARY, "-s", "-w", "1", ...topo.devsA], { stdin: "some data\n", timeoutMs: 10_000 });
    const ms = performance.now() - t0;
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 4, stdout: "" });
    expect(r.stderr).toMatch(/^l2pipe: [^\n]+\n$/);
    expect(r.stderr).toMatch(/no receiver/);
    for (const d of topo.devsA) expect(r.stderr).toContain(d);
    expect(ms).toBeGreaterThanOrEqual(1000);
    // ~2 s: one second of waiting plus start-up, on a loaded 2-core CI machine too.
    expect(ms).toBeLessThan(2500);
  });

  test("a second sender while the receiver is busy: exit 4, saying the receiver is busy; the first transfer exact", async () => {
    const input = `${scratch.dir}/busy-in`;
    // 64 MiB over 2 x 50 Mbit/s take ~5 s: the second sender knocks in the middle.
    await makeRandomFile(input, 64 << 20);
    let second: { code: number; stdout: string; stderr: string } | null = null;
    const r = await transfer(topo, {
      input, senderArgs: ["-0"], timeoutMs: 30_000,
      during: async () => {
        await Bun.sleep(1000);
        second = await topo.exec(topo.nsA, [BINARY, "-s", "-w", "1.5", ...topo.devsA], { stdin: "other data\n", timeoutMs: 10_000 });
      },
    });
    expect(r.sender.code).toBe(0);
    expect(r.receiver.code).toBe(0);
    expect(r.outSha).toBe(r.inSha);
    expect(second).not.toBeNull();
    expect(second!.code).toBe(4);
    expect(second!.stderr).toMatch(/^l2pipe: no free receiver on .* within 1\.5 s: the receiver on .* is busy with another transfer\n$/);
  }, 40_000);

  test("a receiver killed mid-stream: the sender fails with exit 1 within -t", async () => {
    const input = `${scratch.dir}/killed-in`;
    const out = `${input}.out`;
    // 64 MiB over 2 x 50 Mbit/s take ~5 s: the receiver dies in the middle.
    await makeRandomFile(input, 64 << 20);
    const receiver = topo.spawn(topo.nsB, ["sh", "-c", `exec ${q(BINARY)} -r ${topo.devsB.join(" ")} > ${q(out)}`], {
      stdout: "ignore",
      stderr: "pipe",
    });
    const stats = `${input}.json`;
    const sender = topo.spawn(topo.nsA, ["sh", "-c", `exec ${q(BINARY)} -s -t 2 --stats-json ${q(stats)} ${topo.devsA.join(" ")} < ${q(input)}`], {
      stdout: "ignore",
      stderr: "pipe",
    });
    // Kill it once data is flowing (some MiB written out), not on a timer.
    const deadline = performance.now() + 15_000;
    while (size(out) < 4 << 20 && sender.exitCode === null && performance.now() < deadline) await Bun.sleep(20);
    expect(size(out)).toBeGreaterThanOrEqual(4 << 20);
    receiver.kill("SIGKILL");
    const killedAt = performance.now();
    const timer = setTimeout(() => sender.kill("SIGKILL"), 10_000);
    const code = await sender.exited;
    clearTimeout(timer);
    const ms = performance.now() - killedAt;
    const stderr = await new Response(sender.stderr).text();
    expect(await receiver.exited).toBe(137);
    expect({ code, stderr }).toEqual({ code: 1, stderr: expect.stringMatching(/^l2pipe: [^\n]+\n$/) });
    expect(stderr).toMatch(/receiver lost/);
    for (const d of topo.devsA) expect(stderr).toContain(d);
    // -t 2: silent for 2 s, then out (with some slack for the last ACK's age).
    expect(ms).toBeGreaterThan(1500);
    expect(ms).toBeLessThan(3500);
    // It did not pretend: the output is short of the input, and the statistics say it failed.
    expect(size(out)).toBeLessThan(64 << 20);
    const s = (await Bun.file(stats).json()) as RunStats;
    expect(s).toMatchObject({ role: "send", ok: false, error: expect.stringMatching(/receiver lost/) });
  });
});

function size(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** An unprivileged user and its group: nobody where it exists, otherwise one made for the test. */
function ensureUser(): { name: string; group: string } {
  for (const name of ["nobody", "l2pipetest"]) {
    const id = Bun.spawnSync(["id", "-gn", name], { stderr: "ignore" });
    if (id.exitCode === 0) return { name, group: id.stdout.toString().trim() };
  }
  const add = Bun.spawnSync(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "l2pipetest"], { stderr: "pipe" });
  if (add.exitCode !== 0) throw new Error(`useradd l2pipetest: ${add.stderr.toString()}`);
  return { name: "l2pipetest", group: Bun.spawnSync(["id", "-gn", "l2pipetest"]).stdout.toString().trim() };
}

/** setcap and getcap (Debian: libcap2-bin), installed when missing. */
function ensureSetcap(): { ok: boolean; why: string } {
  const have = () => Bun.which("setcap") !== null && Bun.which("getcap") !== null;
  if (have()) return { ok: true, why: "" };
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  Bun.spawnSync(["apt-get", "update", "-qq"], { env, stdout: "ignore", stderr: "ignore" });
  const inst = Bun.spawnSync(["apt-get", "install", "-y", "-qq", "libcap2-bin"], { env, stdout: "ignore", stderr: "pipe" });
  if (have()) return { ok: true, why: "" };
  return { ok: false, why: `setcap/getcap missing and 'apt-get install libcap2-bin' failed: ${inst.stderr.toString().trim().split("\n").at(-1)}` };
}
